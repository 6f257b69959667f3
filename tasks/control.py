"""An FMC step's run on Celery (backup, validate, regenerate, verify): what every control task does around its
step.

`control_run` loads the renewal and its pair and records the attempt as started (one transaction), hands the
task what its step needs (the pair, sessions to the FMC), and records the end. On an error it does what
`pipeline.flow.after_control_error` decides: retry (Celery's countdown is the flow's backoff) while the FMC
is unreachable, else fail the FMC and let `tasks.flow.advance` carry out `after_fmc` (which stops the
renewal). A message for a renewal that ended (redelivered, or resent late) records and runs nothing
(`pipeline.flow.takes_step`); a duplicate that stands aside (`stand_aside`) is recorded as `ignored`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, NoReturn

from celery import Task, current_task
from celery.exceptions import Ignore

from pipeline import flow, store
from pipeline.devices.factory import SessionFactory
from pipeline.devices.session import DeviceSession
from pipeline.errors import SftrenewError
from pipeline.inventory import Fmc, FmcPair
from pipeline.store import StepName
from tasks import record
from tasks.context import Context, context
from tasks.flow import advance

log = logging.getLogger(__name__)

#: What an ignored duplicate's attempt says.
IGNORED_MESSAGE = "a duplicate: another task runs this step"


#: What a task that stands aside did instead of its step, as Flower shows it (upper-cased).
StoodAside = Literal["forwarded", "ignored", "held", "paused", "late"]


def stand_aside(why: str, state: StoodAside = "ignored") -> NoReturn:
    """End the task without running its step and without claiming a result. The message is acknowledged and
    dropped: what sends the step again is the flow (`sftrenew approve`, `resume`, the reconciler), from the
    record, or the forward itself.

    Celery has no way to say this: Ignore sends no event and stores nothing (Flower and `AsyncResult` would
    show the task STARTED for good), and Reject without requeue is stored and shown as FAILURE. So the task
    says it itself, then ends with Ignore: the state, with `why`, in the result backend, then a `task-<state>`
    event, which Flower shows as the task's state: FORWARDED, IGNORED, HELD, PAUSED or LATE, never
    SUCCESS or FAILURE."""
    log.warning("task stood aside (%s): %s", state, why)
    if current_task:  # a task runs (not a step called in-process by `python -m pipeline.steps`)
        try:
            # Stored first, told second: whoever sees the event finds the result backend already agreeing.
            current_task.update_state(state=state.upper(), meta={"reason": why})
            current_task.send_event(f"task-{state}", reason=why)
        except Exception as exc:  # for the views only: the broker's trouble must not run the step
            log.warning("could not record that task %s stood aside: %s", current_task.request.id, exc)
    raise Ignore(why)


@dataclass(frozen=True)
class ControlRun:
    """What a control task's body works with."""

    ctx: Context
    renewal_id: str
    pair: FmcPair
    fmc: str
    factory: SessionFactory

    @property
    def entry(self) -> Fmc:
        """The FMC's inventory entry."""
        return self.pair.primary if self.pair.primary.name == self.fmc else self.pair.secondary

    @contextmanager
    def fmc_session(self) -> Iterator[DeviceSession]:
        """A root session on the FMC (its first route), closed on leaving."""
        session = self.factory.open(self.fmc, self.factory.routes_for(self.fmc)[0])
        try:
            yield session
        finally:
            session.close()

    def end_fmc(self, state: flow.FmcState) -> str:
        """Record where the FMC ended and carry the renewal on (`advance`); returns what advance did."""
        with self.ctx.db() as db:
            store.set_fmc_state(
                session=db, renewal_id=self.renewal_id, fmc=self.fmc, state=state, now=self.ctx.now()
            )
        return advance(self.ctx, self.renewal_id, self.pair)


@contextmanager
def control_run(task: Task, renewal_id: str, fmc: str, step: StepName) -> Iterator[ControlRun]:
    """Run an FMC step as its task's current attempt: recorded as started, then as succeeded, or as failed
    (retrying when the flow retries it). A failure the flow does not retry fails the FMC and the renewal."""
    ctx = context()
    attempt = task.request.retries + 1
    with ctx.db() as db:
        renewal, pair = ctx.renewal(db, renewal_id)
        if not flow.takes_step(renewal.state):
            stand_aside(
                f"renewal {renewal_id} ended ({renewal.state}): a late {step} message runs nothing", "late"
            )
        factory, resolver = ctx.devices(pair.name)  # before the record: a bad inventory records nothing
        started = record.started(
            db, renewal_id=renewal_id, fmc=fmc, step=step, task_id=task.request.id, now=ctx.now()
        )
    run = ControlRun(ctx, renewal_id, pair, fmc, factory)
    try:
        yield run
    except Ignore:
        # A duplicate standing aside (a regenerate whose claim another live task holds): not a failure.
        with ctx.db() as db:
            record.finished(db, started, "ignored", now=ctx.now(), message=IGNORED_MESSAGE)
        raise
    except SftrenewError as exc:
        decided = flow.after_control_error(attempt, exc.retryable, ctx.retry_policy)
        with ctx.db() as db:
            state = flow.control_failed_state(decided)
            record.finished(
                db, started, state, now=ctx.now(), failure=record.Failure.of(exc, resolver.redact)
            )
        if isinstance(decided, flow.Retry):
            raise task.retry(exc=exc, countdown=decided.delay_s) from exc
        run.end_fmc("failed")
        raise
    except Exception as exc:
        # Not one of ours: a bug (the task fails; once the renewal stalls, the reconciler sends the step
        # again).
        with ctx.db() as db:
            record.finished(
                db, started, "failed", now=ctx.now(), failure=record.Failure.of(exc, resolver.redact)
            )
        raise
    with ctx.db() as db:
        record.finished(db, started, "succeeded", now=ctx.now())
