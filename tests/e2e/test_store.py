"""The store on real databases: a fresh SQLite file and a fresh PostgreSQL database per test, on both.

What must hold even when Celery's state is gone: one active renewal per pair and one regeneration per FMC
(decided by the database under real concurrency), secrets sealed at rest, every attempt recorded, and a schema
made only by linear migrations that match the models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from subprocess import PIPE
from typing import TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from pipeline import store
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.store.schema import script_directory
from pipeline.store.tables import metadata

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PAIR_FMCS: list[tuple[str, store.Role]] = [("fmc-a", "primary"), ("fmc-b", "secondary")]
TABLES = {"renewal", "renewal_fmc", "step_run", "artifact"}
T = TypeVar("T")


def _start(session: Session, pair: str = "dc1", now: datetime = T0) -> store.Renewal:
    row, created = store.start_renewal(
        session=session, pair=pair, requested_by="ops", fmcs=PAIR_FMCS, now=now
    )
    assert created
    return row


def _race(engines: list[Engine], work: Callable[[Session], T]) -> list[T]:
    """Run `work` once per engine, in threads released together, each with its own session."""
    barrier = threading.Barrier(len(engines), timeout=30)

    def one(engine: Engine) -> T:
        with Session(engine) as session:
            barrier.wait()
            return work(session)

    with ThreadPoolExecutor(len(engines)) as pool:
        return list(pool.map(one, engines))


@pytest.fixture
def key() -> SecretStr:
    return SecretStr(store.new_artifact_key())


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ---------------------------------------------------------------- schema and engine


def test_an_empty_database_upgrades_to_head(empty_engine: Engine) -> None:
    assert store.current_revision(empty_engine) is None
    store.migrate(empty_engine)
    assert store.current_revision(empty_engine) == script_directory().get_current_head()
    assert set(inspect(empty_engine).get_table_names()) >= TABLES


def test_migrating_again_is_a_no_op_that_keeps_rows(engine: Engine) -> None:
    with Session(engine) as session:
        renewal_id = _start(session).id
    store.migrate(engine)
    with Session(engine) as session:
        assert store.renewal(session=session, renewal_id=renewal_id) is not None


MIGRATE_SCRIPT = """
import os, sys
from pipeline.settings import load_settings
from pipeline.store import make_engine, migrate
engine = make_engine(load_settings(os.environ))
engine.connect().close()
print("ready", flush=True)
sys.stdin.readline()
migrate(engine)
"""


def test_workers_starting_together_migrate_once(empty_engine: Engine) -> None:
    """Three processes (as three workers would) wait at a start line, then all migrate the empty database."""
    url = empty_engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "SFTRENEW_DATABASE_URL": url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_SCRIPT], stdin=PIPE, stdout=PIPE, stderr=PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert store.current_revision(empty_engine) == script_directory().get_current_head()


def test_the_migrations_build_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect the expression index (uq_step_run_attempt); the next test shows it works.
        warnings.filterwarnings("ignore", ".*expression-based index")
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_revision_history_is_one_line() -> None:
    scripts = script_directory()
    revisions = list(scripts.walk_revisions())
    assert len(scripts.get_heads()) == 1
    assert len(scripts.get_bases()) == 1
    for revision in revisions:
        assert not isinstance(revision.down_revision, tuple | list), f"{revision.revision} is a merge point"
        assert len(revision.nextrev) <= 1, f"{revision.revision} branches"


def test_sqlite_runs_with_wal_a_busy_timeout_and_foreign_keys(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as first, sqlite_engine.connect() as second:
        for connection in (first, second):
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_database_refuses_rows_that_break_its_rules(engine: Engine) -> None:
    with Session(engine) as session:
        rid = _start(session).id
    twin_attempt = text(
        "INSERT INTO step_run (renewal_id, fmc, device, step, attempt, state, started_at_utc) "
        "VALUES (:rid, 'fmc-a', NULL, 'backup', 1, 'started', :now)"
    )
    with engine.connect() as connection:
        connection.execute(twin_attempt, {"rid": rid, "now": T0})
        with pytest.raises(IntegrityError):  # attempt 1 of the FMC's backup twice (device NULL)
            connection.execute(twin_attempt, {"rid": rid, "now": T0})
        connection.rollback()
        with pytest.raises(IntegrityError):  # a step of an FMC the renewal does not have
            connection.execute(
                text(
                    "INSERT INTO step_run (renewal_id, fmc, step, attempt, state, started_at_utc) "
                    "VALUES ('nope', 'fmc-x', 'push', 1, 'started', :now)"
                ),
                {"now": T0},
            )
        connection.rollback()
        with pytest.raises(IntegrityError):  # finished, yet holding the pair
            connection.execute(
                text(
                    "INSERT INTO renewal (id, pair, requested_by, requested_at_utc, state, active_pair, "
                    "last_progress_utc) VALUES ('r1', 'dc1', 'ops', :now, 'succeeded', 'dc1', :now)"
                ),
                {"now": T0},
            )


@pytest.mark.parametrize(
    ("url", "problem"),
    [("mysql://u@h/db", "supports sqlite and postgresql"), ("::not a url:s3cret@", "not a database URL")],
)
def test_a_database_url_we_cannot_use_is_a_config_error(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        store.make_engine(Settings(database_url=url))
    assert "s3cret" not in str(caught.value)


def test_a_bare_postgresql_url_means_psycopg() -> None:
    engine = store.make_engine(Settings(database_url="postgresql://u:pw@127.0.0.1:1/db"))
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


# ---------------------------------------------------------------- renewals


def test_a_renewal_from_enqueue_to_end(engine: Engine, key: SecretStr) -> None:
    with Session(engine) as session:
        row = _start(session)
        rid = row.id
        assert (row.state, row.active_pair, row.requested_at_utc) == ("queued", "dc1", T0)
        store.mark_running(session=session, renewal_id=rid, now=T0 + timedelta(seconds=1))
        for minute, (fmc, _role) in enumerate(PAIR_FMCS, start=1):
            now = T0 + timedelta(minutes=minute)
            backup = store.step_started(session=session, renewal_id=rid, fmc=fmc, step="backup", now=now)
            store.add_artifact(
                session=session, renewal_id=rid, fmc=fmc, device=None, kind="backup",
                path="/etc/sf/ca_root/cacert.pem", data=b"-----BEGIN CERTIFICATE-----\n", secret=False,
                key=None, now=now,
            )  # fmt: skip
            store.record_ca_before(session=session, renewal_id=rid, fmc=fmc, ca_sha256="a" * 64, now=now)
            store.step_finished(session=session, step_run_id=_id(backup), state="succeeded", now=now)
            assert store.claim_regeneration(
                session=session, renewal_id=rid, fmc=fmc, token=f"t-{fmc}", now=now
            )
            store.record_regeneration(
                session=session, renewal_id=rid, fmc=fmc, ca_after_sha256="b" * 64, now=now
            )
            for device in ("ftd-1", "ftd-2"):
                _push(session, rid, device, "succeeded", fmc=fmc)
            store.set_fmc_state(session=session, renewal_id=rid, fmc=fmc, state="succeeded", now=now)
        end = T0 + timedelta(minutes=5)
        done = store.finish_renewal(session=session, renewal_id=rid, state="succeeded", now=end)
        assert (done.state, done.active_pair, done.finished_at_utc, done.last_progress_utc) == (
            "succeeded", None, end, end,
        )  # fmt: skip

    with Session(engine) as session:  # read back in a new session: all of it is in the database
        again = store.renewal(session=session, renewal_id=rid)
        assert again is not None
        assert again.finished_at_utc == end
        assert again.finished_at_utc.tzinfo is not None
        fmcs = store.fmcs_of(session=session, renewal_id=rid)
        assert [(f.fmc, f.role, f.state, f.ca_after_sha256) for f in fmcs] == [
            ("fmc-a", "primary", "succeeded", "b" * 64),
            ("fmc-b", "secondary", "succeeded", "b" * 64),
        ]
        steps = store.steps_of(session=session, renewal_id=rid)
        assert [(s.fmc, s.step, s.device, s.state) for s in steps][:3] == [
            ("fmc-a", "backup", None, "succeeded"),
            ("fmc-a", "push", "ftd-1", "succeeded"),
            ("fmc-a", "push", "ftd-2", "succeeded"),
        ]
        assert len(store.artifacts_of(session=session, renewal_id=rid, kind="backup")) == 2
        assert store.failed_pushes(session=session, renewal_id=rid) == []
        assert store.active_renewal(session=session, pair="dc1") is None
        assert store.last_renewal(session=session, pair="dc1") == again
        nxt = _start(session, now=end + timedelta(days=1))  # the pair is free again
        assert [r.id for r in store.history(session=session, pair="dc1")] == [nxt.id, rid]


def _id(step: store.StepRun) -> int:
    assert step.id is not None
    return step.id


def test_a_second_enqueue_gets_the_active_renewal(engine: Engine) -> None:
    with Session(engine) as session:
        first = _start(session)
        same, created = store.start_renewal(
            session=session, pair="dc1", requested_by="other", fmcs=PAIR_FMCS, now=T0 + timedelta(minutes=1)
        )
        assert (same.id, created) == (first.id, False)
        _start(session, pair="dc2")  # another pair is not blocked


def test_two_racing_enqueues_create_exactly_one_renewal(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    engines = [engine, make_twin(engine)]
    for round_ in range(10):
        pair = f"race-{round_}"

        def enqueue(session: Session, pair: str = pair) -> tuple[str, bool]:
            row, created = store.start_renewal(
                session=session, pair=pair, requested_by="ops", fmcs=PAIR_FMCS, now=T0
            )
            return row.id, created

        results = _race(engines, enqueue)
        assert sorted(created for _, created in results) == [False, True], results
        assert len({rid for rid, _ in results}) == 1
    with Session(engine) as session:
        assert len(store.history(session=session, limit=100)) == 10


def test_a_retry_reopens_a_finished_renewal_once(engine: Engine) -> None:
    with Session(engine) as session:
        rid = _start(session).id
        store.finish_renewal(session=session, renewal_id=rid, state="partial", now=T0)
        assert store.resume_renewal(session=session, renewal_id=rid, now=T0 + timedelta(hours=1))
        assert not store.resume_renewal(session=session, renewal_id=rid, now=T0 + timedelta(hours=1))
        reopened = store.renewal(session=session, renewal_id=rid)
        assert reopened is not None
        assert (reopened.state, reopened.active_pair, reopened.finished_at_utc) == ("running", "dc1", None)
        store.finish_renewal(session=session, renewal_id=rid, state="partial", now=T0 + timedelta(hours=2))
        _start(session, now=T0 + timedelta(hours=3))
        assert not store.resume_renewal(session=session, renewal_id=rid, now=T0 + timedelta(hours=4))


def test_stalled_finds_active_renewals_that_stopped_moving(engine: Engine) -> None:
    with Session(engine) as session:
        quiet, alive, ended = (_start(session, pair=p).id for p in ("dc1", "dc2", "dc3"))
        store.touch(session=session, renewal_id=alive, now=T0 + timedelta(minutes=50))
        store.touch(session=session, renewal_id=alive, now=T0 + timedelta(minutes=10))  # never backwards
        store.finish_renewal(session=session, renewal_id=ended, state="failed", now=T0)
        found = store.stalled(session=session, older_than=timedelta(minutes=30), now=T0 + timedelta(hours=1))
        assert [r.id for r in found] == [quiet]
        assert found[0].last_progress_utc == T0


def test_naive_datetimes_and_unknown_ids_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(ValueError, match="naive"):
            _start(session, now=datetime(2026, 11, 27, 9, 0))  # noqa: DTZ001 - the point of the test
        with pytest.raises(LookupError):
            store.touch(session=session, renewal_id="nope", now=T0)
        rid = _start(session).id
        with pytest.raises(LookupError):
            store.step_started(session=session, renewal_id=rid, fmc="fmc-x", step="backup", now=T0)


# ---------------------------------------------------------------- regeneration: exactly once


def test_only_the_first_claimer_regenerates_and_its_retry_may_too(engine: Engine) -> None:
    with Session(engine) as session:
        rid = _start(session).id

        def claim(token: str) -> bool:
            return store.claim_regeneration(
                session=session, renewal_id=rid, fmc="fmc-a", token=token, now=T0 + timedelta(minutes=3)
            )

        assert claim("task-1")
        assert not claim("task-2")
        assert claim("task-1")  # the same task, redelivered
        assert claim("task-2") is False
        row = store.renewal_fmc(session=session, renewal_id=rid, fmc="fmc-a")
        assert (row.regen_token, row.regen_claimed_at_utc) == ("task-1", T0 + timedelta(minutes=3))
        assert store.claim_regeneration(session=session, renewal_id=rid, fmc="fmc-b", token="task-2", now=T0)
        with pytest.raises(LookupError):
            store.claim_regeneration(session=session, renewal_id=rid, fmc="fmc-x", token="task-3", now=T0)


def test_racing_claimers_with_different_tokens_one_wins(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    with Session(engine) as session:
        rid = _start(session).id
    engines = [engine, make_twin(engine), make_twin(engine)]
    tokens = iter(["task-1", "task-2", "task-3"])
    lock = threading.Lock()

    def claim(session: Session) -> bool:
        with lock:
            token = next(tokens)
        return store.claim_regeneration(session=session, renewal_id=rid, fmc="fmc-a", token=token, now=T0)

    assert sorted(_race(engines, claim)) == [False, False, True]


def test_the_new_ca_is_recorded_once(engine: Engine) -> None:
    with Session(engine) as session:
        rid = _start(session).id

        def record(sha: str) -> None:
            store.record_regeneration(
                session=session, renewal_id=rid, fmc="fmc-a", ca_after_sha256=sha, now=T0
            )

        with pytest.raises(ValueError, match="after claim_regeneration"):
            record("b" * 64)
        store.claim_regeneration(session=session, renewal_id=rid, fmc="fmc-a", token="task-1", now=T0)
        record("b" * 64)
        record("b" * 64)  # a task redone: no-op
        with pytest.raises(ValueError, match="refusing to overwrite"):
            record("c" * 64)

        def before(sha: str, fmc_uuid: str | None = None) -> None:
            store.record_ca_before(
                session=session, renewal_id=rid, fmc="fmc-a", ca_sha256=sha, fmc_uuid=fmc_uuid, now=T0
            )

        before("a" * 64, fmc_uuid="u")
        before("a" * 64)
        with pytest.raises(ValueError, match="refusing to overwrite"):
            before("d" * 64)
        row = store.renewal_fmc(session=session, renewal_id=rid, fmc="fmc-a")
        assert (row.ca_before_sha256, row.ca_after_sha256, row.fmc_uuid) == ("a" * 64, "b" * 64, "u")
        assert row.regen_done_at_utc == T0


# ---------------------------------------------------------------- steps and attempts


def _push(
    session: Session, rid: str, device: str, state: store.StepState, fmc: str = "fmc-a"
) -> store.StepRun:
    run = store.step_started(session=session, renewal_id=rid, fmc=fmc, step="push", device=device, now=T0)
    return store.step_finished(
        session=session, step_run_id=_id(run), state=state, error_kind="DeviceUnreachableError", now=T0
    )


def test_failed_pushes_are_the_devices_whose_last_attempt_failed(engine: Engine) -> None:
    with Session(engine) as session:
        rid = _start(session).id
        history: dict[str, tuple[store.StepState, ...]] = {
            "ftd-1": ("retrying", "failed", "succeeded"),  # came back: not failed
            "ftd-2": ("succeeded", "failed"),  # last one failed
            "ftd-3": ("failed",),
            "ftd-4": ("failed", "retrying"),  # a retry is on its way: not (yet) failed
        }
        for device, states in history.items():
            for state in states:
                _push(session, rid, device, state)
        _push(session, rid, "ftd-9", "failed", fmc="fmc-b")
        failed = store.failed_pushes(session=session, renewal_id=rid)
        assert [(s.fmc, s.device, s.attempt) for s in failed] == [
            ("fmc-a", "ftd-2", 2),
            ("fmc-a", "ftd-3", 1),
            ("fmc-b", "ftd-9", 1),
        ]
        only_b = store.failed_pushes(session=session, renewal_id=rid, fmc="fmc-b")
        assert [s.device for s in only_b] == ["ftd-9"]


def test_attempts_are_numbered_per_device_and_step(engine: Engine) -> None:
    with Session(engine) as session:
        rid = _start(session).id

        def start(device: str | None = None, step: store.StepName = "validate") -> store.StepRun:
            return store.step_started(
                session=session, renewal_id=rid, fmc="fmc-a", step=step, device=device, task_id="t", now=T0
            )

        assert [start().attempt for _ in range(3)] == [1, 2, 3]
        assert start(step="backup").attempt == 1
        assert start("ftd-1", "push").attempt == 1
        assert start("ftd-2", "push").attempt == 1
        with pytest.raises(ValueError, match="names the device"):
            start(None, "push")


def test_racing_twins_of_one_push_get_distinct_attempts(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    with Session(engine) as session:
        rid = _start(session).id
    engines = [engine, *(make_twin(engine) for _ in range(3))]

    def push(session: Session) -> int:
        run = store.step_started(
            session=session, renewal_id=rid, fmc="fmc-a", step="push", device="ftd-1", now=T0
        )
        return run.attempt

    assert sorted(_race(engines, push)) == [1, 2, 3, 4]


def test_a_finished_step_keeps_its_route_error_and_a_short_message(engine: Engine) -> None:
    with Session(engine) as session:
        rid = _start(session).id
        run = store.step_started(
            session=session, renewal_id=rid, fmc="fmc-a", step="push", device="ftd-1", route="direct",
            task_id="task-9", who="alice", now=T0,
        )  # fmt: skip
        done = store.step_finished(
            session=session, step_run_id=_id(run), state="failed", error_kind="CommandFailedError",
            message="x" * 2000, route="via jump-1", now=T0 + timedelta(seconds=30),
        )  # fmt: skip
        assert (done.route, done.error_kind, done.task_id, done.who) == (
            "via jump-1", "CommandFailedError", "task-9", "alice",
        )  # fmt: skip
        assert done.message is not None
        assert len(done.message) == 500
        assert done.finished_at_utc == T0 + timedelta(seconds=30)
        with pytest.raises(ValueError, match="finishes as one of"):
            store.step_finished(session=session, step_run_id=_id(run), state="started", now=T0)


# ---------------------------------------------------------------- artifacts


def _raw_data(engine: Engine, artifact_id: int | None) -> bytes:
    """The column as the database holds it, read with plain SQL (no model, no decryption)."""
    with engine.connect() as connection:
        value = connection.execute(
            text("SELECT data FROM artifact WHERE id = :id"), {"id": artifact_id}
        ).one()[0]
    assert isinstance(value, bytes | memoryview)
    return bytes(value)


def _keep(
    session: Session, rid: str, *, path: str, data: bytes, secret: bool, key: SecretStr | None
) -> store.Artifact:
    return store.add_artifact(
        session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", kind="peer_material", path=path,
        data=data, secret=secret, key=key, now=T0,
    )  # fmt: skip


def test_secret_artifacts_are_sealed_at_rest(engine: Engine, key: SecretStr, key_pem: bytes) -> None:
    path = "/var/sf/peers/u1/certs_pushed/sftunnel-key.pem"
    with Session(engine) as session:
        rid = _start(session).id
        kept = _keep(session, rid, path=path, data=key_pem, secret=True, key=key)
        assert _keep(session, rid, path=path, data=key_pem, secret=True, key=key).id == kept.id  # redone
    raw = _raw_data(engine, kept.id)
    assert b"PRIVATE KEY" not in raw
    assert key_pem.splitlines()[1] not in raw
    with Session(engine) as session:
        (stored,) = store.artifacts_of(session=session, renewal_id=rid, device="ftd-1")
        assert store.artifact_data(stored, key=key) == key_pem
        with pytest.raises(ConfigError, match="different SFTRENEW_ARTIFACT_KEY") as caught:
            store.artifact_data(stored, key=SecretStr(store.new_artifact_key()))
        assert "PRIVATE KEY" not in str(caught.value)
        with pytest.raises(ConfigError, match="SFTRENEW_ARTIFACT_KEY is not set"):
            store.artifact_data(stored, key=None)


def test_a_secret_without_a_key_is_not_stored(engine: Engine, key_pem: bytes) -> None:
    with Session(engine) as session:
        rid = _start(session).id
        with pytest.raises(ConfigError, match="SFTRENEW_ARTIFACT_KEY") as caught:
            _keep(session, rid, path="/etc/sf/keys/sftunnel-key.pem", data=key_pem, secret=True, key=None)
        assert "new_artifact_key" in str(caught.value)
        with pytest.raises(ValueError, match="secret=True"):  # a key offered as plain
            _keep(session, rid, path="/tmp/whatever.pem", data=key_pem, secret=False, key=None)
        assert store.artifacts_of(session=session, renewal_id=rid) == []


def test_plain_artifacts_are_stored_as_they_are(engine: Engine, key: SecretStr) -> None:
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
    with Session(engine) as session:
        rid = _start(session).id
        kept = _keep(session, rid, path="/var/sf/peers/u1/cacert.pem", data=cert, secret=False, key=key)
        assert store.artifact_data(kept, key=None) == cert
    assert _raw_data(engine, kept.id) == cert


def test_a_sealed_blob_copied_to_another_row_does_not_open(
    engine: Engine, key: SecretStr, key_pem: bytes
) -> None:
    with Session(engine) as session:
        rid = _start(session).id
        one, two = (
            _keep(
                session,
                rid,
                path=f"/var/sf/peers/{uuid}/sftunnel-key.pem",
                data=key_pem,
                secret=True,
                key=key,
            )
            for uuid in ("u1", "u2")
        )
        session.connection().execute(
            text("UPDATE artifact SET data = :d WHERE id = :id"), {"d": one.data, "id": two.id}
        )
        session.commit()
        session.refresh(two)
        with pytest.raises(ConfigError, match="copied from another record"):
            store.artifact_data(two, key=key)
