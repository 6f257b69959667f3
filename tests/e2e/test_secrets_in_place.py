"""Secrets in their place (issue 11, item 3): during a lab renewal with a real worker and Flower, Flower's
worker API shows no password and no key, and each process holds in its environment only the secrets its
role gets (`sftrenew.environments`).

Every secret is a real one here: Redis asks for a password, the database URL carries one (the test
PostgreSQL trusts local connections, so it never asks: the password only has to stay out of sight), and the
lab's admin password comes from an environment variable the inventory names, so the renewal succeeds only if
the worker has it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from sqlalchemy import Engine

from tests.e2e.conftest import MakeEnv, _make_env
from tests.e2e.services import RedisServer, http_get
from tests.lab.fixtures import MakeLab

pytestmark = pytest.mark.e2e

#: The variable the lab's inventory is made to name for the admin password.
ADMIN_VARIABLE = "LAB_FLEET_ADMIN"


@pytest.fixture
def postgres_with_password(empty_postgres_engine: Engine) -> tuple[Engine, str]:
    url = empty_postgres_engine.url.set(password="pg-" + secrets.token_urlsafe(12))
    return empty_postgres_engine, url.render_as_string(hide_password=False)


@pytest.fixture
def make_pg_env(
    make_lab: MakeLab, redis_server: RedisServer, postgres_with_password: tuple[Engine, str], tmp_path: Path
) -> Iterator[MakeEnv]:
    yield from _make_env(make_lab, redis_server, postgres_with_password, tmp_path)


def _process_group(leader: int) -> list[int]:
    """Every process of the group `leader` leads (a supervising worker and its Celery child, Flower)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == leader:
                pids.append(int(proc.name))
    return pids


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item)


def test_flower_and_every_process_hold_only_the_secrets_they_use(
    make_pg_env: MakeEnv, redis_server: RedisServer, postgres_with_password: tuple[Engine, str]
) -> None:
    redis_password = "redis-" + secrets.token_urlsafe(12)
    redis.Redis(port=redis_server.port).config_set("requirepass", redis_password)
    broker = f"redis://:{redis_password}@127.0.0.1:{redis_server.port}"
    env = make_pg_env(
        {"ftds": 2, "scenarios": "expired"},
        SFTRENEW_BROKER_URL=f"{broker}/0",
        SFTRENEW_RESULT_BACKEND=f"{broker}/1",
    )
    inventory_path = env.lab.directory / "inventory.yaml"
    inventory: dict[str, Any] = yaml.safe_load(inventory_path.read_text())
    inventory["credentials"]["fleet-admin"]["password"] = {"env": ADMIN_VARIABLE}
    inventory_path.write_text(yaml.safe_dump(inventory))
    admin_password = env.lab.secrets["fleet-admin"]
    env.overrides[ADMIN_VARIABLE] = admin_password
    pg_password = postgres_with_password[1].split("://", 1)[1].split("@")[0].split(":", 1)[1]
    passwords = {
        "Redis": redis_password,
        "PostgreSQL": pg_password,
        "Flower's": env.flower_password,
        "the artifact key": env.artifact_key,
        **{f"the lab's {name}": value for name, value in env.lab.secrets.items()},
    }

    url, auth = env.start_flower()
    try:
        worker = env.start_worker()
        env.wait_flower_sees_workers(url, auth)
        renewal_id = env.enqueue()
        assert worker.process is not None
        environs = {
            "worker": [_environ(pid) for pid in _process_group(worker.process.pid)],
            "flower": [_environ(pid) for pid in _process_group(env.flowers[0].pid)],
        }
        assert env.wait_finished(renewal_id).state == "succeeded"  # the worker had what it needs
        api = http_get(url + "/api/workers?refresh=1", auth)
        workers = json.loads(api)
        pages = [http_get(f"{url}/worker/{name}", auth) for name in workers]
    finally:
        env.stop()

    # Flower shows the configuration a worker reports, with the Redis URLs masked by Celery.
    (reported,) = workers.values()
    assert reported["conf"]["broker_url"] == f"redis://:********@127.0.0.1:{redis_server.port}/0"
    assert reported["conf"]["result_backend"] == f"redis://:********@127.0.0.1:{redis_server.port}/1"
    assert "sftrenew_settings" not in reported["conf"]
    for where, text in [("/api/workers", api), *((f"the worker page {i}", p) for i, p in enumerate(pages))]:
        for what, password in passwords.items():
            assert password not in text, f"{what} password is in Flower's {where}"

    # Each process holds only the secrets its role uses (two worker processes: supervisor and child).
    assert len(environs["worker"]) >= 2 and len(environs["flower"]) >= 1
    for environ in environs["worker"]:
        assert environ["SFTRENEW_ARTIFACT_KEY"] == env.artifact_key
        assert environ[ADMIN_VARIABLE] == admin_password
        assert redis_password in environ["SFTRENEW_BROKER_URL"]
        assert pg_password in environ["SFTRENEW_DATABASE_URL"]
        assert "SFTRENEW_FLOWER_PASSWORD" not in environ
        assert env.flower_password not in "\n".join(environ.values())
    for environ in environs["flower"]:
        assert environ["SFTRENEW_FLOWER_PASSWORD"] == env.flower_password
        assert redis_password in environ["SFTRENEW_BROKER_URL"]
        for name in ("SFTRENEW_ARTIFACT_KEY", "SFTRENEW_DATABASE_URL", "SFTRENEW_INVENTORY", ADMIN_VARIABLE):
            assert name not in environ, f"Flower has {name}"
        values = "\n".join(environ.values())
        for what in ("PostgreSQL", "the artifact key", *(w for w in passwords if w.startswith("the lab's"))):
            assert passwords[what] not in values, f"{what} password is in Flower's environment"
