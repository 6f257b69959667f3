"""Database fixtures: real SQLite files and real PostgreSQL databases, fresh for every test.

PostgreSQL: the server at `SFTRENEW_TEST_POSTGRES_URL` (default: the local one CI starts, trust auth) gets a
new `sftrenew_<random>` database per test, dropped afterwards. When the server is not reachable the tests
FAIL and say so: a store that was never tried on PostgreSQL must not look green.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, sync_playwright
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from pipeline import store
from pipeline.settings import Settings
from pipeline.store import make_engine, migrate
from tests.e2e.renewal_env import RenewalEnv
from tests.e2e.services import AppendOnlyRedis, RedisServer
from tests.lab.fixtures import MakeLab

POSTGRES_URL = os.environ.get(
    "SFTRENEW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgres")
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PAIR_FMCS: list[tuple[str, store.Role]] = [("fmc-a", "primary"), ("fmc-b", "secondary")]
T = TypeVar("T")


def engine_for(url: str) -> Engine:
    """An engine made as the product makes it (WAL, busy timeout... on SQLite; pre-ping on PostgreSQL)."""
    return make_engine(Settings(database_url=url))


def twin(engine: Engine) -> Engine:
    """A second, independent engine on the same database: what another worker process would have."""
    return engine_for(engine.url.render_as_string(hide_password=False))


def new_renewal(session: Session, pair: str = "dc1", now: datetime = T0) -> store.Renewal:
    """A fresh queued renewal of `pair` (fmc-a primary, fmc-b secondary); the pair must be free."""
    row, created = store.start_renewal(
        session=session, pair=pair, requested_by="ops", fmcs=PAIR_FMCS, now=now
    )
    assert created
    return row


def race(engines: list[Engine], work: Callable[[Session], T]) -> list[T]:
    """Run `work` once per engine, in threads released together, each with its own session."""
    barrier = threading.Barrier(len(engines), timeout=30)

    def one(engine: Engine) -> T:
        with Session(engine) as session:
            barrier.wait()
            return work(session)

    with ThreadPoolExecutor(len(engines)) as pool:
        return list(pool.map(one, engines))


def step_id(step: store.StepRun) -> int:
    assert step.id is not None
    return step.id


@pytest.fixture
def key() -> SecretStr:
    return SecretStr(store.new_artifact_key())


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    problem = None
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        problem = type(exc.orig).__name__
    if problem is not None:
        where = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is not reachable at {where} ({problem}): start it (.ci/run does, with "
            "pg_ctlcluster) or point SFTRENEW_TEST_POSTGRES_URL at a server where this user may "
            "CREATE DATABASE",
            pytrace=False,
        )
    yield admin
    admin.dispose()


@pytest.fixture
def empty_sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = engine_for(f"sqlite:///{tmp_path / 'sftrenew.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def empty_postgres_engine(postgres_admin: Engine) -> Iterator[Engine]:
    name = f"sftrenew_{secrets.token_hex(6)}"
    with postgres_admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = engine_for(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with postgres_admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_engine(empty_sqlite_engine: Engine) -> Engine:
    migrate(empty_sqlite_engine)
    return empty_sqlite_engine


@pytest.fixture
def postgres_engine(empty_postgres_engine: Engine) -> Engine:
    migrate(empty_postgres_engine)
    return empty_postgres_engine


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest) -> Engine:
    """A fresh database that was never migrated, on each backend in turn."""
    engine: Engine = request.getfixturevalue(f"empty_{request.param}_engine")
    return engine


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest) -> Engine:
    """A fresh, migrated database on each backend in turn: every store test runs on both."""
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    return engine


@pytest.fixture
def make_twin() -> Iterator[Callable[[Engine], Engine]]:
    """Second engines on a test's database, disposed of at the end (before the database is dropped)."""
    made: list[Engine] = []

    def _make(engine: Engine) -> Engine:
        made.append(twin(engine))
        return made[-1]

    yield _make
    for engine in made:
        engine.dispose()


# ------------------------------------------------------- renewal environments (tests/e2e/renewal_env.py)

MakeEnv = Callable[..., RenewalEnv]


@pytest.fixture
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis with no persistence; `"append-only"` by indirect parametrization keeps an append-only
    file that a restart carries on from."""
    kind = getattr(request, "param", "empty")
    server = AppendOnlyRedis(tmp_path / "redis") if kind == "append-only" else RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> tuple[Engine, str]:
    engine: Engine = request.getfixturevalue(f"empty_{request.param}_engine")
    return engine, engine.url.render_as_string(hide_password=False)


@pytest.fixture
def sqlite_database(empty_sqlite_engine: Engine) -> tuple[Engine, str]:
    return empty_sqlite_engine, empty_sqlite_engine.url.render_as_string(hide_password=False)


def _make_env(
    make_lab: MakeLab, redis_server: RedisServer, db: tuple[Engine, str], tmp_path: Path
) -> Iterator[MakeEnv]:
    envs: list[RenewalEnv] = []

    def make(lab: dict[str, Any] | None = None, **overrides: str) -> RenewalEnv:
        running = make_lab(**(lab or {"ftds": 3}))
        directory = tmp_path / f"env{len(envs)}"
        directory.mkdir()
        env = RenewalEnv(running, redis_server, db[0], db[1], directory, dict(overrides))
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.stop()


@pytest.fixture
def make_env(
    make_lab: MakeLab, redis_server: RedisServer, database: tuple[Engine, str], tmp_path: Path
) -> Iterator[MakeEnv]:
    yield from _make_env(make_lab, redis_server, database, tmp_path)


@pytest.fixture
def make_sqlite_env(
    make_lab: MakeLab, redis_server: RedisServer, sqlite_database: tuple[Engine, str], tmp_path: Path
) -> Iterator[MakeEnv]:
    yield from _make_env(make_lab, redis_server, sqlite_database, tmp_path)


# ------------------------------------------------------- a real browser (the Flower page, the evidence pack)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What the machine's own probe uses: without the background-networking flags, Chromium tries hosts that
# this closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM}): `apt-get install chromium` (./run test does, as root)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
