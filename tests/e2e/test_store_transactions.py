"""Several writers in one transaction (`store.atomically`), on real databases (a fresh SQLite file and a fresh
PostgreSQL database per test): a push attempt's end is four records that belong together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import Engine, event, text
from sqlmodel import Session

from pipeline import store
from tests.e2e.conftest import T0, new_renewal, race, step_id

pytestmark = pytest.mark.e2e

T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)


@contextmanager
def commits(engine: Engine) -> Iterator[list[int]]:
    """Count the commits the engine's connections make inside the block."""
    seen: list[int] = []

    def count(_connection: object) -> None:
        seen.append(1)

    event.listen(engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", count)


def _open_round(session: Session, rid: str, devices: list[str]) -> None:
    store.begin_fmc(session=session, renewal_id=rid, fmc="fmc-a", now=T0)
    store.open_push_round(session=session, renewal_id=rid, fmc="fmc-a", round=1, devices=devices, now=T0)


def _end_of_push(session: Session, rid: str, run: store.StepRun, *, restarted: bool) -> bool:
    """What a push attempt's end records (`tasks.pushing`): restart, what the device held, end, settle."""
    if restarted:
        store.record_restarted(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T1)
    store.record_held(
        session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", ca_sha256="a" * 64,
        cert_sha256="b" * 64, key_matches_cert=True, route="direct", now=T1,
    )  # fmt: skip
    store.step_finished(session=session, step_run_id=step_id(run), state="succeeded", now=T2)
    return store.settle_push(
        session=session, renewal_id=rid, fmc="fmc-a", round=1, device="ftd-1", outcome="succeeded", now=T1
    )


def _counts(engine: Engine, rid: str) -> dict[str, object]:
    with Session(engine) as session:
        renewal = store.renewal(session=session, renewal_id=rid)
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()  # noqa: S608 - ours
            for table in ("peer_held", "push_restart")
        } | {
            "finished": connection.execute(text("SELECT state FROM step_run")).scalar(),
            "settled": connection.execute(text("SELECT outcome FROM push_slot")).scalar(),
            "progress": renewal.last_progress_utc if renewal else None,
        }


def test_a_push_end_is_one_commit_and_marks_progress_once_at_the_latest_time(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        _open_round(session, rid, ["ftd-1"])
        run = store.step_started(
            session=session, renewal_id=rid, fmc="fmc-a", step="push", device="ftd-1", now=T0
        )
        store.record_write_started(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T0)
        with commits(engine) as seen:
            last = store.atomically(session, lambda: _end_of_push(session, rid, run, restarted=True))
    assert last is True  # the only slot: its settle claims the round's verify
    assert len(seen) == 1
    with Session(engine) as session:
        renewal = store.renewal(session=session, renewal_id=rid)
        facts = store.push_restart(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1")
        held = store.held_by_device(session=session, renewal_id=rid, fmc="fmc-a")
    assert renewal is not None and renewal.last_progress_utc == T2  # the step's end, the latest of the unit
    assert facts is not None and facts.restarted_at_utc == T1
    assert held["ftd-1"].cert_sha256 == "b" * 64


def test_a_unit_that_fails_half_way_leaves_none_of_its_records(engine: Engine) -> None:
    """A restart recorded without a write is refused (LookupError) after the unit's first writes: the held
    files and the step's end, made before it in the same unit, are rolled back with it."""
    with Session(engine) as session:
        rid = new_renewal(session).id
        _open_round(session, rid, ["ftd-1"])
        run = store.step_started(
            session=session, renewal_id=rid, fmc="fmc-a", step="push", device="ftd-1", now=T0
        )
    before = _counts(engine, rid)

    def end_then_restart(session: Session) -> None:
        store.step_finished(session=session, step_run_id=step_id(run), state="succeeded", now=T2)
        store.record_held(
            session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", ca_sha256=None, cert_sha256=None,
            key_matches_cert=False, route="direct", now=T1,
        )  # fmt: skip
        store.record_restarted(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T1)

    with Session(engine) as session:
        with pytest.raises(LookupError, match="no write recorded"):
            store.atomically(session, lambda: end_then_restart(session))
        assert not store.held_by_device(session=session, renewal_id=rid, fmc="fmc-a")  # usable afterwards
    assert _counts(engine, rid) == before == {
        "peer_held": 0, "push_restart": 0, "finished": "started", "settled": None, "progress": T0,
    }  # fmt: skip


def test_racing_twins_in_units_get_distinct_attempts(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    """A twin's insert of the same attempt number is a constraint violation inside the unit: the whole unit
    runs again (a writer must not retry inside a broken transaction), and numbers the attempt afresh."""
    with Session(engine) as session:
        rid = new_renewal(session).id
    engines = [engine, *(make_twin(engine) for _ in range(3))]

    def push(session: Session) -> int:
        def start() -> int:
            return store.step_started(
                session=session, renewal_id=rid, fmc="fmc-a", step="push", device="ftd-1", now=T0
            ).attempt

        return store.atomically(session, start)

    assert sorted(race(engines, push)) == [1, 2, 3, 4]


def test_a_constraint_violation_runs_the_unit_again_from_its_reads(engine: Engine) -> None:
    """Deterministically: the unit's first run inserts a row another session holds already; the second run
    reads again and finds the row its restart updates."""
    with Session(engine) as session:
        rid = new_renewal(session).id
        store.record_write_started(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T0)
    runs: list[int] = []

    def work(session: Session) -> None:
        runs.append(1)
        if len(runs) == 1:  # as a twin that did not see the row: INSERT, which the primary key refuses
            session.add(
                store.PushRestart(renewal_id=rid, fmc="fmc-a", device="ftd-1", write_started_at_utc=T1)
            )
        store.record_restarted(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1", now=T2)

    with Session(engine) as session:
        store.atomically(session, lambda: work(session))
    assert len(runs) == 2
    with Session(engine) as session:
        facts = store.push_restart(session=session, renewal_id=rid, fmc="fmc-a", device="ftd-1")
    assert facts is not None and (facts.write_started_at_utc, facts.restarted_at_utc) == (T0, T2)


def test_a_unit_inside_a_unit_is_refused(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(RuntimeError, match="one unit per transaction"):
            store.atomically(session, lambda: store.atomically(session, lambda: None))
        assert not store.transactions.in_unit(session)  # the outer unit was closed on the way out
