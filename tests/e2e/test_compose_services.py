"""What compose.yaml runs, run here without Docker: its Redis command (the configuration on standard input,
the password on no command line, the healthcheck through REDISCLI_AUTH) against a real redis-server, and
`sftrenew worker --ping` (the workers' healthcheck) against a real worker whose queues are named within a
prefix, as the lab profile's are."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from pipeline.settings import load_settings
from tests.e2e.conftest import MakeEnv
from tests.e2e.services import RedisServer, wait_until
from workers.app import make_celery
from workers.embedded import free_port, redis_server_binary

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SFTRENEW = str(Path(sys.executable).parent / "sftrenew")
#: Every character a URL, a shell or Redis's configuration syntax treats specially.
AWKWARD = 'p@ss:w/rd%41#frag?q=1 &x\\y"z$HOME`id`\\n'


def _compose_redis() -> dict[str, object]:
    service: dict[str, object] = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["redis"]
    return service


def _as_run(part: str, secrets_dir: Path) -> str:
    """A part of a compose command as the container runs it: `$$` is `$`, secrets under our folder."""
    return part.replace("$$", "$").replace("/run/secrets/", f"{secrets_dir}/")


def _stub(path: Path, text: str) -> None:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


@contextlib.contextmanager
def _redis_as_composed(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path, dict[str, str]]]:
    """compose's redis command, with the image's entrypoint and redis-cli replaced by stubs that run the
    embedded redis-server and redis-cli on a free loopback port."""
    secrets_dir, bin_dir, data = tmp_path / "secrets", tmp_path / "bin", tmp_path / "data"
    for folder in (secrets_dir, bin_dir, data):
        folder.mkdir()
    (secrets_dir / "redis_password").write_text(AWKWARD + "\n")
    server, port = redis_server_binary(), free_port()
    # The image's entrypoint runs `redis-server ARGS...`: here, the embedded one, on our port and folder.
    _stub(
        bin_dir / "docker-entrypoint.sh",
        f'shift\nexec {server} "$@" --port {port} --bind 127.0.0.1 --dir {data}\n',
    )
    _stub(bin_dir / "redis-cli", f'exec {Path(server).parent / "redis-cli"} -p {port} "$@"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    command = [_as_run(str(part), secrets_dir) for part in _compose_redis()["command"]]  # type: ignore[attr-defined]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process, port, secrets_dir, env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _command_lines() -> list[str]:
    lines = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit():
                lines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return lines


def test_compose_redis_takes_any_password_on_standard_input_only(tmp_path: Path) -> None:
    with _redis_as_composed(tmp_path) as (process, port, secrets_dir, env):
        settings = load_settings(
            {
                "SFTRENEW_BROKER_URL": f"redis://127.0.0.1:{port}/0",
                "SFTRENEW_REDIS_PASSWORD_FILE": str(secrets_dir / "redis_password"),
            }
        )
        client = redis.Redis.from_url(settings.celery.broker_url.get_secret_value())

        def answers() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                return bool(client.ping())
            return False

        wait_until(answers, timeout=30, what="compose's redis answering with the password from the file")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).get("x")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        # `exec` all the way: the process compose starts is Redis itself (it gets SIGTERM and saves).
        assert Path(f"/proc/{process.pid}/exe").resolve() == Path(redis_server_binary()).resolve()
        assert not [line for line in _command_lines() if "p@ss:w/rd" in line]
        healthcheck = _compose_redis()["healthcheck"]["test"]  # type: ignore[index]
        assert healthcheck[0] == "CMD-SHELL"
        probe = subprocess.run(["sh", "-c", _as_run(healthcheck[1], secrets_dir)], env=env, check=False)
        assert probe.returncode == 0
        (secrets_dir / "redis_password").write_text("not-the-password\n")
        refused = subprocess.run(["sh", "-c", _as_run(healthcheck[1], secrets_dir)], env=env, check=False)
        assert refused.returncode != 0


def test_a_worker_on_prefixed_queues_answers_its_ping_and_renews(
    make_sqlite_env: MakeEnv, redis_server: RedisServer
) -> None:
    """As the lab profile runs: every queue within `lab`, the operator from SFTRENEW_OPERATOR. The worker
    answers `worker --ping`, serves only `lab.*` queues, and a renewal goes through them, and only them."""
    env = make_sqlite_env({"ftds": 1}, SFTRENEW_QUEUE_PREFIX="lab", SFTRENEW_OPERATOR="alice")
    env.start_worker()
    worker_env = env.env_for("worker")

    def ping(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SFTRENEW, "worker", "--ping", "--hostname", name],
            env=worker_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    wait_until(lambda: ping("w1@%h").returncode == 0, timeout=90, what="the worker answering its ping")
    assert "pong" in ping(f"w1@{socket.gethostname()}").stdout
    absent = ping("nobody@%h")
    assert absent.returncode == 1 and "did not answer" in absent.stderr
    app = make_celery(load_settings(worker_env))
    try:
        served = app.control.inspect(destination=[f"w1@{socket.gethostname()}"], timeout=5).active_queues()
    finally:
        app.close()
    assert served, "the worker did not say which queues it serves"
    names = {queue["name"] for queues in served.values() for queue in queues}
    assert {"lab.control", "lab.push"} <= names and all(name.startswith("lab.") for name in names), names
    renewal_id = env.enqueue()
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    assert env.renewal(renewal_id).requested_by == "alice"
    # Nothing went to (or waits on) a queue outside the prefix: Celery keeps a queue as a Redis list.
    client = redis.Redis(port=redis_server.port, db=0, decode_responses=True)
    keys = {str(key) for key in client.scan_iter()}
    lists = {key for key in keys if client.type(key) == "list"}
    assert not lists & {"control", "push", "celery"}, lists
    bindings = {key for key in keys if key.startswith("_kombu.binding.")}
    assert bindings and all(
        b.startswith(("_kombu.binding.lab.", "_kombu.binding.celery")) for b in bindings
    ), bindings
