"""Renewals, regeneration claims and step runs on real databases (a fresh SQLite file and a fresh PostgreSQL
database per test, on both).

What must hold even when Celery's state is gone: one active renewal per pair and one regeneration per FMC
(decided by the database under real concurrency), and every attempt recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session

from pipeline import store
from tests.e2e.conftest import PAIR_FMCS, T0, new_renewal, race, step_id

pytestmark = pytest.mark.e2e


# ---------------------------------------------------------------- renewals


def test_a_renewal_from_enqueue_to_end(engine: Engine, key: SecretStr) -> None:
    with Session(engine) as session:
        row = new_renewal(session)
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
            store.step_finished(session=session, step_run_id=step_id(backup), state="succeeded", now=now)
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
        nxt = new_renewal(session, now=end + timedelta(days=1))  # the pair is free again
        assert [r.id for r in store.history(session=session, pair="dc1")] == [nxt.id, rid]


def test_a_second_enqueue_gets_the_active_renewal(engine: Engine) -> None:
    with Session(engine) as session:
        first = new_renewal(session)
        same, created = store.start_renewal(
            session=session, pair="dc1", requested_by="other", fmcs=PAIR_FMCS, now=T0 + timedelta(minutes=1)
        )
        assert (same.id, created) == (first.id, False)
        new_renewal(session, pair="dc2")  # another pair is not blocked


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

        results = race(engines, enqueue)
        assert sorted(created for _, created in results) == [False, True], results
        assert len({rid for rid, _ in results}) == 1
    with Session(engine) as session:
        assert len(store.history(session=session, limit=100)) == 10


def test_a_retry_reopens_a_finished_renewal_once(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        store.finish_renewal(session=session, renewal_id=rid, state="partial", now=T0)
        assert store.resume_renewal(session=session, renewal_id=rid, now=T0 + timedelta(hours=1))
        assert not store.resume_renewal(session=session, renewal_id=rid, now=T0 + timedelta(hours=1))
        reopened = store.renewal(session=session, renewal_id=rid)
        assert reopened is not None
        assert (reopened.state, reopened.active_pair, reopened.finished_at_utc) == ("running", "dc1", None)
        store.finish_renewal(session=session, renewal_id=rid, state="partial", now=T0 + timedelta(hours=2))
        new_renewal(session, now=T0 + timedelta(hours=3))
        assert not store.resume_renewal(session=session, renewal_id=rid, now=T0 + timedelta(hours=4))


def test_stalled_finds_active_renewals_that_stopped_moving(engine: Engine) -> None:
    with Session(engine) as session:
        quiet, alive, ended = (new_renewal(session, pair=p).id for p in ("dc1", "dc2", "dc3"))
        store.touch(session=session, renewal_id=alive, now=T0 + timedelta(minutes=50))
        store.touch(session=session, renewal_id=alive, now=T0 + timedelta(minutes=10))  # never backwards
        store.finish_renewal(session=session, renewal_id=ended, state="failed", now=T0)
        found = store.stalled(session=session, older_than=timedelta(minutes=30), now=T0 + timedelta(hours=1))
        assert [r.id for r in found] == [quiet]
        assert found[0].last_progress_utc == T0


def test_naive_datetimes_and_unknown_ids_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(ValueError, match="naive"):
            new_renewal(session, now=datetime(2026, 11, 27, 9, 0))  # noqa: DTZ001 - the point of the test
        with pytest.raises(LookupError):
            store.touch(session=session, renewal_id="nope", now=T0)
        rid = new_renewal(session).id
        with pytest.raises(LookupError):
            store.step_started(session=session, renewal_id=rid, fmc="fmc-x", step="backup", now=T0)


# ---------------------------------------------------------------- regeneration: exactly once


def test_only_the_first_claimer_regenerates_and_its_retry_may_too(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id

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
        rid = new_renewal(session).id
    engines = [engine, make_twin(engine), make_twin(engine)]
    tokens = iter(["task-1", "task-2", "task-3"])
    lock = threading.Lock()

    def claim(session: Session) -> bool:
        with lock:
            token = next(tokens)
        return store.claim_regeneration(session=session, renewal_id=rid, fmc="fmc-a", token=token, now=T0)

    assert sorted(race(engines, claim)) == [False, False, True]


def test_the_new_ca_is_recorded_once(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id

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
        session=session, step_run_id=step_id(run), state=state, error_kind="DeviceUnreachableError", now=T0
    )


def test_failed_pushes_are_the_devices_whose_last_attempt_failed_or_was_refused(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        history: dict[str, tuple[store.StepState, ...]] = {
            "ftd-1": ("retrying", "failed", "succeeded"),  # came back: not failed
            "ftd-2": ("succeeded", "failed"),  # last one failed
            "ftd-3": ("failed",),
            "ftd-4": ("failed", "retrying"),  # a retry is on its way: not (yet) failed
            "ftd-5": ("retrying", "refused"),  # refused before any write, no retry on its way: retry it
        }
        for device, states in history.items():
            for state in states:
                _push(session, rid, device, state)
        _push(session, rid, "ftd-9", "failed", fmc="fmc-b")
        failed = store.failed_pushes(session=session, renewal_id=rid)
        assert [(s.fmc, s.device, s.attempt) for s in failed] == [
            ("fmc-a", "ftd-2", 2),
            ("fmc-a", "ftd-3", 1),
            ("fmc-a", "ftd-5", 2),
            ("fmc-b", "ftd-9", 1),
        ]
        only_b = store.failed_pushes(session=session, renewal_id=rid, fmc="fmc-b")
        assert [s.device for s in only_b] == ["ftd-9"]


def test_attempts_are_numbered_per_device_and_step(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id

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
        rid = new_renewal(session).id
    engines = [engine, *(make_twin(engine) for _ in range(3))]

    def push(session: Session) -> int:
        run = store.step_started(
            session=session, renewal_id=rid, fmc="fmc-a", step="push", device="ftd-1", now=T0
        )
        return run.attempt

    assert sorted(race(engines, push)) == [1, 2, 3, 4]


def test_a_finished_step_keeps_its_route_error_and_a_short_message(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        run = store.step_started(
            session=session, renewal_id=rid, fmc="fmc-a", step="push", device="ftd-1", route="direct",
            task_id="task-9", who="alice", now=T0,
        )  # fmt: skip
        done = store.step_finished(
            session=session, step_run_id=step_id(run), state="failed", error_kind="CommandFailedError",
            message="x" * 2000, route="via jump-1", now=T0 + timedelta(seconds=30),
        )  # fmt: skip
        assert (done.route, done.error_kind, done.task_id, done.who) == (
            "via jump-1", "CommandFailedError", "task-9", "alice",
        )  # fmt: skip
        assert done.message is not None
        assert len(done.message) == 500
        assert done.finished_at_utc == T0 + timedelta(seconds=30)
        with pytest.raises(ValueError, match="finishes as one of"):
            store.step_finished(session=session, step_run_id=step_id(run), state="started", now=T0)
