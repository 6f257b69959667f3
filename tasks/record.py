"""Recording a task's step in the database: the parts every task shares.

A task's outcome is written before the task returns or raises, so the record never depends on Celery's result
backend. The functions take an open session, so that a task can record in the transaction it opens anyway (a
push attempt opens at most three: see `tasks.pushing`). Messages go through the credential resolver's
redaction first; DeviceErrors are built from redacted parts already, so this is a second net, not the only
one. Whether a failed attempt is retried, and so how it is recorded, is `pipeline.flow`'s decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from pipeline import store
from pipeline.errors import SftrenewError, recorded_kind
from pipeline.store import StepName, StepState

#: What the record says of an error that is not one of ours (a bug): the traceback is in the worker log.
INTERNAL_MESSAGE = "internal error; see the worker log"


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
