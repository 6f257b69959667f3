"""Recording a task's step in the database: the parts every task shares.

A task's outcome is written before the task returns or raises, so the record never depends on Celery's result
backend. The functions take an open session, so that a task can record in the transaction it opens anyway (a
push attempt opens at most three: see `tasks.pushing`). Messages go through the credential resolver's
redaction first; DeviceErrors are built from redacted parts already, so this is a second net, not the only
one. Whether a failed attempt is retried, and so how it is recorded, is `pipeline.flow`'s decision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from celery.exceptions import WorkerLostError
from sqlmodel import Session

from pipeline import store
from pipeline.errors import SftrenewError, recorded_kind
from pipeline.store import StepName, StepState

#: What the record says of an error that is not one of ours (a bug): the traceback is in the worker log.
INTERNAL_MESSAGE = "internal error; see the worker log"
#: What Celery's result backend and Flower say of a task whose worker died once another task took its step.
LOST_MESSAGE = "its worker stopped (killed or lost); another task took the step over"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRecord:
    """The step run an attempt writes its end to, and the route it ran on."""

    step_run_id: int
    route: str | None = None


@dataclass(frozen=True)
class Failure:
    """How a failed attempt is recorded: its kind and redacted message."""

    error_kind: str
    message: str

    @classmethod
    def of(cls, exc: BaseException, redact: Callable[[str], str]) -> Failure:
        """An error of ours says what happened (redacted); any other is a bug, named by its class only."""
        if isinstance(exc, SftrenewError):
            return cls(recorded_kind(exc), redact(str(exc)))
        return cls(recorded_kind(exc), INTERNAL_MESSAGE)


def started(  # noqa: PLR0913 - keyword-only: the columns of a step run the caller knows
    db: Session,
    *,
    renewal_id: str,
    fmc: str,
    step: StepName,
    task_id: str | None,
    now: datetime,
    device: str | None = None,
    route: str | None = None,
    who: str | None = None,
) -> StepRecord:
    """Record the attempt as started (committed: a worker that dies now leaves a started attempt)."""
    run = store.step_started(
        session=db,
        renewal_id=renewal_id,
        fmc=fmc,
        step=step,
        device=device,
        task_id=task_id,
        route=route,
        who=who,
        now=now,
    )
    return StepRecord(run.id or 0, route)


def finished(
    db: Session,
    record: StepRecord,
    state: StepState,
    *,
    now: datetime,
    failure: Failure | None = None,
    message: str | None = None,
) -> None:
    """Record how the attempt ended: `state`, with the failure's kind and message, or a success's message."""
    store.step_finished(
        session=db,
        step_run_id=record.step_run_id,
        state=state,
        error_kind=failure.error_kind if failure else None,
        message=failure.message if failure else message,
        route=record.route,
        now=now,
    )


def mark_lost(task_ids: Iterable[str | None], *, taker: str | None = None) -> None:
    """Tell Celery's own record that these tasks died with their worker, once their attempts were closed as
    interrupted (`store.interrupt_started`): FAILURE in the result backend and a task-failed event, so that
    Flower does not show them STARTED forever beside the task that took their step over (`taker`, left as
    it is). Best effort: the database of record already says it; a broker or backend hiccup only logs."""
    lost = sorted({t for t in task_ids if t and t != taker})
    if not lost:
        return
    app = current_app._get_current_object()
    exc = WorkerLostError(LOST_MESSAGE)
    try:
        for task_id in lost:
            app.backend.mark_as_failure(task_id, exc, call_errbacks=False)
        with app.events.default_dispatcher() as dispatcher:
            for task_id in lost:
                dispatcher.send("task-failed", uuid=task_id, exception=repr(exc), traceback="")
    except Exception as err:  # any broker or backend error (Redis' own too): logged, never raised
        log.warning("could not mark tasks %s as lost in Celery's record: %r", ", ".join(lost), err)
