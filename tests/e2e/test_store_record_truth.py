"""The record tells the truth, on real databases (a fresh SQLite file and a fresh PostgreSQL database per
test): the regeneration's intent is recorded only by the claim's holder, and attempts whose worker died are
closed as interrupted, never the live ones.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from pipeline import store
from tests.e2e.conftest import T0, new_renewal, step_id

pytestmark = pytest.mark.e2e


def test_only_the_claims_holder_records_the_intent_and_only_before_it_is_done(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id

        def intent(token: str) -> bool:
            return store.record_regeneration_intent(
                session=session, renewal_id=rid, fmc="fmc-a", token=token, now=T0 + timedelta(minutes=4)
            )

        assert not intent("task-1")  # no claim yet
        assert store.renewal_fmc(session=session, renewal_id=rid, fmc="fmc-a").regen_intent_at_utc is None
        assert store.claim_regeneration(session=session, renewal_id=rid, fmc="fmc-a", token="task-1", now=T0)
        assert not intent("task-2")
        assert intent("task-1") and intent("task-1")  # the holder, and its redelivery
        row = store.renewal_fmc(session=session, renewal_id=rid, fmc="fmc-a")
        assert row.regen_intent_at_utc == T0 + timedelta(minutes=4)
        stale = T0 + timedelta(minutes=10)
        assert store.take_over_regeneration(
            session=session, renewal_id=rid, fmc="fmc-a", token="task-2", stale_before=stale, now=stale
        )
        assert not intent("task-1")  # taken over: the old holder must not run generate_certs.pl
        assert intent("task-2")
        store.record_regeneration(
            session=session, renewal_id=rid, fmc="fmc-a", ca_after_sha256="b" * 64, now=stale
        )
        assert not intent("task-2")  # done: nothing left to run


def test_a_redelivered_task_closes_its_own_started_attempt_as_interrupted(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id

        def start(step: store.StepName, task: str, device: str | None = None) -> store.StepRun:
            return store.step_started(
                session=session, renewal_id=rid, fmc="fmc-a", step=step, device=device, task_id=task, now=T0
            )

        killed = step_id(start("push", "task-1", "ftd-1"))
        other_device = step_id(start("push", "task-2", "ftd-2"))
        backup = step_id(start("backup", "task-3"))
        again = start("push", "task-1", "ftd-1")  # the same message, redelivered
        assert again.attempt == 2 and again.state == "started"
        states = {s.id: s.state for s in store.steps_of(session=session, renewal_id=rid)}
        assert states[killed] == "interrupted"
        assert states[other_device] == "started" and states[backup] == "started"
        row = next(s for s in store.steps_of(session=session, renewal_id=rid) if s.id == killed)
        assert row.finished_at_utc == T0 and row.message and "took the step over" in row.message


def test_a_takeover_closes_every_started_attempt_but_the_takers(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id

        def start(task: str) -> int:
            return step_id(
                store.step_started(
                    session=session, renewal_id=rid, fmc="fmc-a", step="regenerate", task_id=task, now=T0
                )
            )

        def interrupt(other_than: str | None = None) -> list[str | None]:
            return store.interrupt_started(
                session=session,
                renewal_id=rid,
                fmc="fmc-a",
                steps=("regenerate", "backup"),
                other_than=other_than,
                now=T0,
            )

        dead, taker = start("task-1"), start("task-2")
        assert interrupt(other_than="task-2") == ["task-1"]
        states = {s.id: s.state for s in store.steps_of(session=session, renewal_id=rid)}
        assert (states[dead], states[taker]) == ("interrupted", "started")
        store.step_finished(session=session, step_run_id=taker, state="succeeded", now=T0)
        assert interrupt() == []  # nothing started is left; finished attempts are never touched
        states = {s.id: s.state for s in store.steps_of(session=session, renewal_id=rid)}
        assert (states[dead], states[taker]) == ("interrupted", "succeeded")
