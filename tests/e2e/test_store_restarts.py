"""A push's write and restart as recorded facts, and the `refused` step state, on real databases (a fresh
SQLite file and a fresh PostgreSQL database per test, on both); and the upgrade that brought them (0002 ->
0003) on a database with history, which on SQLite rebuilds `step_run`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, Table, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from pipeline import store
from pipeline.material import FilesBefore
from pipeline.store.schema import alembic_config, script_directory
from tests.e2e.conftest import T0, new_renewal, race

pytestmark = pytest.mark.e2e

T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)


def _facts(engine: Engine, rid: str, device: str = "ftd-1") -> tuple[object, object] | None:
    """(write started, restarted) as a new session reads them; None: no write recorded."""
    with Session(engine) as session:
        row = store.push_restart(session=session, renewal_id=rid, fmc="fmc-a", device=device)
        return None if row is None else (row.write_started_at_utc, row.restarted_at_utc)


def test_a_write_then_its_restart_are_recorded_and_a_new_write_clears_the_restart(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        assert _facts(engine, rid) is None  # never written by this renewal
        store.record_write_started(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T0)
        assert _facts(engine, rid) == (T0, None)  # a restart is owed
        store.record_restarted(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T1)
        assert _facts(engine, rid) == (T0, T1)
        store.record_write_started(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T2)
        assert _facts(engine, rid) == (T2, None)  # the earlier restart does not cover this write
        assert _facts(engine, rid, "ftd-2") is None
        renewal = store.renewal(session=session, renewal_id=rid)
        assert renewal is not None and renewal.last_progress_utc == T2


def test_what_the_peer_held_before_is_kept_from_the_first_write_only(engine: Engine) -> None:
    """`sftrenew restore` checks the copies the push kept against the files as they were before the
    renewal's first write: a later write (whose files are partly new already) never replaces that."""
    first = FilesBefore("/var/sf/peers/u-1", ".sftrenew-20261203T000000Z.bak", "a" * 64, "b" * 64, "c" * 64)
    later = FilesBefore("/var/sf/peers/u-1", ".sftrenew-20261203T000000Z.bak", "d" * 64, None, "e" * 64)
    with Session(engine) as session:
        rid = new_renewal(session).id
        for device, now, before in (
            ("ftd-1", T0, first),
            ("ftd-1", T1, later),
            ("ftd-1", T2, None),
            ("ftd-2", T0, None),  # as an older sftrenew recorded it
        ):
            store.record_write_started(
                session=session, renewal_id=rid, fmc="fmc-a", device=device, now=now, before=before
            )
    with Session(engine) as session:
        rows = {
            device: store.push_restart(session=session, renewal_id=rid, fmc="fmc-a", device=device)
            for device in ("ftd-1", "ftd-2")
        }
    assert rows["ftd-1"] is not None and rows["ftd-1"].write_started_at_utc == T2
    assert store.files_before(rows["ftd-1"]) == first
    assert rows["ftd-2"] is not None and store.files_before(rows["ftd-2"]) is None


def test_a_restart_without_a_write_or_a_write_on_an_unknown_fmc_is_refused(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        with pytest.raises(LookupError, match="no write recorded"):
            store.record_restarted(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T0)
        with pytest.raises(LookupError):
            store.record_write_started(session=session, renewal_id=rid, fmc="fmc-x", device="ftd-1", now=T0)
        with pytest.raises(ValueError, match="naive"):
            store.record_write_started(
                session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T0.replace(tzinfo=None)
            )
    assert _facts(engine, rid) is None


def test_twin_attempts_recording_a_write_at_once_leave_one_row(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
    engines = [engine, *(make_twin(engine) for _ in range(3))]

    def write(session: Session) -> object:
        store.record_write_started(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T0)
        row = store.push_restart(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1")
        return None if row is None else row.write_started_at_utc

    assert race(engines, write) == [T0] * 4
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM push_restart")).scalar() == 1


# ---------------------------------------------------------------- the upgrade keeps history


def _write_history_at_0002(engine: Engine) -> None:
    meta = MetaData()
    with engine.begin() as connection, warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*expression-based index")
        table = {n: Table(n, meta, autoload_with=connection) for n in ("renewal", "renewal_fmc", "step_run")}
        connection.execute(table["renewal"].insert(), [{
            "id": "r-old", "pair": "dc1", "requested_by": "ops", "requested_at_utc": T0, "state": "running",
            "active_pair": "dc1", "last_progress_utc": T0,
        }])  # fmt: skip
        connection.execute(table["renewal_fmc"].insert(), [
            {"renewal_id": "r-old", "fmc": "fmc-a", "role": "primary", "state": "running"},
        ])  # fmt: skip
        connection.execute(table["step_run"].insert(), [{
            "renewal_id": "r-old", "fmc": "fmc-a", "device": device, "step": "push", "attempt": 1,
            "state": "failed", "started_at_utc": T0, "finished_at_utc": T0,
            "error_kind": "AuthenticationFailedError", "message": "authentication failed",
        } for device in ("ftd-1", None)])  # fmt: skip


def _downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def _step_rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT device, attempt, state, error_kind, message FROM step_run ORDER BY id")
        )
        return [tuple(row) for row in rows]


def test_upgrading_from_0002_keeps_steps_and_their_unique_attempts(empty_engine: Engine) -> None:
    store.migrate(empty_engine, revision="0002")
    _write_history_at_0002(empty_engine)
    before = _step_rows(empty_engine)
    store.migrate(empty_engine)
    assert store.current_revision(empty_engine) == script_directory().get_current_head()
    assert _step_rows(empty_engine) == before
    assert "push_restart" in inspect(empty_engine).get_table_names()
    twin = text(
        "INSERT INTO step_run (renewal_id, fmc, device, step, attempt, state, started_at_utc) "
        "VALUES ('r-old', 'fmc-a', NULL, 'push', :attempt, 'refused', :now)"
    )
    with empty_engine.connect() as connection:
        # The rebuilt table (SQLite) kept uq_step_run_attempt: attempt 1 twice is refused, NULL device too.
        with pytest.raises(IntegrityError):
            connection.execute(twin, {"attempt": 1, "now": T0})
        connection.rollback()
        connection.execute(twin, {"attempt": 2, "now": T0})
        connection.commit()
    with Session(empty_engine) as session:  # the new machinery works on the old rows
        store.record_write_started(session=session, renewal_id="r-old", fmc="fmc-a", device="ftd-1", now=T1)
        assert [s.device for s in store.failed_pushes(session=session, renewal_id="r-old")] == ["ftd-1"]


def test_downgrading_to_0002_records_refused_pushes_as_failed(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        run = store.step_started(
            session=session, renewal_id=rid, fmc="fmc-a", step="push", device="ftd-1", now=T0
        )
        store.step_finished(
            session=session,
            step_run_id=run.id or 0,
            state="refused",
            error_kind="HostKeyRejectedError",
            now=T0,
        )
        store.record_write_started(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-2", now=T0)
    _downgrade(engine, "0002")
    assert "push_restart" not in inspect(engine).get_table_names()
    assert _step_rows(engine) == [("ftd-1", 1, "failed", "HostKeyRejectedError", None)]
    store.migrate(engine)
    assert _step_rows(engine) == [("ftd-1", 1, "failed", "HostKeyRejectedError", None)]
