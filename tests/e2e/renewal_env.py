"""A whole renewal environment for end-to-end tests: the lab, a private Redis, a database, real workers.

Everything is the real thing: `sftrenew worker` processes (threads pool) consuming from a redis-server
process, recording in SQLite or PostgreSQL, renewing the lab's FMC pair over SSH; the operator's commands run
as `sftrenew ...` subprocesses. Each process gets the environment of its role (`sftrenew.environments`,
the rule the demo follows): a worker no Flower password, Flower no artifact key, database or device password.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from pipeline import store
from sftrenew.environments import Role, environment_for
from tests.e2e.services import RedisServer, Worker, http_get, http_status, wait_until
from tests.lab.fixtures import RunningLab
from workers.embedded import free_port

SFTRENEW = str(Path(sys.executable).parent / "sftrenew")


@dataclass
class RenewalEnv:
    lab: RunningLab
    redis: RedisServer
    engine: Engine
    database_url: str
    directory: Path
    overrides: dict[str, str] = field(default_factory=dict)
    artifact_key: str = field(default_factory=store.new_artifact_key)
    flower_password: str = field(default_factory=lambda: "flower-" + secrets.token_urlsafe(9))
    workers: list[Worker] = field(default_factory=list)
    flowers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    webs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "SFTRENEW_INVENTORY": str(self.lab.directory / "inventory.yaml"),
            "SFTRENEW_DATABASE_URL": self.database_url,
            "SFTRENEW_BROKER_URL": f"{self.redis.url}/0",
            "SFTRENEW_RESULT_BACKEND": f"{self.redis.url}/1",
            "SFTRENEW_ARTIFACT_KEY": self.artifact_key,
            "SFTRENEW_SSH_CONNECT_TIMEOUT": "2",
            "SFTRENEW_SSH_BANNER_TIMEOUT": "5",
            "SFTRENEW_SSH_AUTH_TIMEOUT": "5",
            "SFTRENEW_VERIFY_DEADLINE": "6",
            "SFTRENEW_VERIFY_INTERVAL": "0.5",
            "SFTRENEW_RETRY_BACKOFF": "0.2",
            "SFTRENEW_RETRY_BACKOFF_MAX": "1",
            "SFTRENEW_WORKER_CONCURRENCY": "8",
            "SFTRENEW_FLOWER_PASSWORD": self.flower_password,
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.overrides)
        return env

    def env_for(self, role: Role) -> dict[str, str]:
        """`env` less the secrets `role` does not use."""
        return environment_for(role, self.env)

    def __post_init__(self) -> None:
        # As an operator runs `sftrenew migrate` first: commands refuse a database without sftrenew's tables,
        # so `enqueue` must not race the first worker, which would create them.
        store.migrate(self.engine)

    def start_worker(self, *, beat: bool = False) -> Worker:
        name = f"w{len(self.workers) + 1}"
        worker = Worker(self.env_for("worker"), self.directory / f"worker-{name}.log", name=name, beat=beat)
        worker.start()
        self.workers.append(worker)
        return worker

    def sftrenew(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SFTRENEW, *args],
            env=self.env_for("command"),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.directory,
        )

    def enqueue(self, *args: str, force: bool = True) -> str:
        """`sftrenew enqueue --pair lab [args]`; the id of the renewal. `force`: the lab's CAs are fresh
        unless a scenario ages them, so the tests renew them on purpose, with a reason (the plan gate refuses
        a CA that is not due otherwise); a test of the gate passes False."""
        forced = ("--force", "--reason", "e2e test of a fresh lab") if force else ()
        result = self.sftrenew("enqueue", "--pair", "lab", *forced, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()[-2]

    def renewal(self, renewal_id: str) -> store.Renewal:
        with store.open_session(self.engine) as db:
            row = store.renewal(session=db, renewal_id=renewal_id)
        assert row is not None
        return row

    def steps(self, renewal_id: str) -> list[store.StepRun]:
        with store.open_session(self.engine) as db:
            return store.steps_of(session=db, renewal_id=renewal_id)

    def wait_finished(self, renewal_id: str, timeout: float = 240) -> store.Renewal:
        def finished() -> bool:
            if not any(w.alive for w in self.workers):
                raise AssertionError(f"no worker is running; their logs end:\n{self.logs()[-3000:]}")
            return self.renewal(renewal_id).state not in ("queued", "running")

        wait_until(
            finished,
            timeout=timeout,
            what=f"renewal {renewal_id} finishing; see the worker logs in {self.directory}",
        )
        return self.renewal(renewal_id)

    def last_push(self, renewal_id: str, fmc: str, device: str) -> store.StepRun:
        runs = [s for s in self.steps(renewal_id) if s.step == "push" and s.fmc == fmc and s.device == device]
        return max(runs, key=lambda s: s.attempt)

    def start_flower(self) -> tuple[str, tuple[str, str]]:
        """`sftrenew flower` on a free port; returns its URL and credentials once it answers (401 without)."""
        port = free_port()
        with (self.directory / "flower.log").open("ab") as log:
            process = subprocess.Popen(
                [SFTRENEW, "flower", f"--port={port}"],
                env=self.env_for("flower"),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.directory,
            )
        self.flowers.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_status(url + "/api/workers") == 401, timeout=60, what="Flower answering")
        return url, ("sftrenew", self.flower_password)

    def start_web(self, users: str, **extra: str) -> str:
        """`sftrenew web` on a free port, with the environment of its role, `users` as SFTRENEW_WEB_USERS
        and `extra` variables; returns its URL once it answers (a redirect to the sign-in)."""
        port = free_port()
        env = {**self.env_for("web"), "SFTRENEW_WEB_USERS": users, **extra}
        with (self.directory / "web.log").open("ab") as log:
            process = subprocess.Popen(
                [SFTRENEW, "web", f"--port={port}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.directory,
            )
        self.webs.append(process)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"sftrenew web exited {process.returncode}:\n{self.logs()[-2000:]}")
            return http_status(url + "/login") == 200

        wait_until(up, timeout=60, what="sftrenew web answering")
        return url

    def wait_flower_sees_workers(self, url: str, auth: tuple[str, str]) -> None:
        """Flower watches events from the moment it has a connection; enqueue only once it answers for the
        workers, so it records every task of the renewal from its first event."""

        def seen() -> bool:
            try:
                return any(
                    f'"{w.name}@' in http_get(url + "/api/workers?refresh=1", auth) for w in self.workers
                )
            except OSError:
                return False

        wait_until(seen, timeout=60, what="Flower seeing the workers")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.directory.glob("*.log")))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for flower in [*self.flowers, *self.webs]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(flower.pid, signal.SIGTERM)
            flower.wait(timeout=30)
