"""Recording a task's step in the database, and turning errors into retries: the parts every task shares.

A task's outcome is written before the task returns or raises, so the record never depends on Celery's result
backend. Messages go through the credential resolver's redaction first; DeviceErrors are built from redacted
parts already, so this is a second net, not the only one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pipeline import store
from pipeline.errors import SftrenewError
from pipeline.steps.push import PushRefusedError
from pipeline.store import StepName, StepState
from tasks.context import Context

#: Retries of an FMC step (backup, validate, regenerate, verify) when the FMC is unreachable.
CONTROL_RETRIES = 3


@dataclass
class StepRecord:
    step_run_id: int
    route: str | None = None
    done: bool = False


@contextmanager
def recording(  # noqa: PLR0913 - keyword-only: the columns of a step run the caller knows
    ctx: Context,
    *,
    renewal_id: str,
    fmc: str,
    step: StepName,
    task_id: str | None,
    device: str | None = None,
    route: str | None = None,
    who: str | None = None,
    redact: Callable[[str], str] = str,
    may_retry: bool = True,
) -> Iterator[StepRecord]:
    """Record the step as started; on leaving, as succeeded unless the body already finished it, or as failed
    (retrying, for a retryable error when the task will be retried) with the error's kind and redacted
    message. A push refused before any write (`PushRefusedError`: its session never opened) is recorded as
    refused, or retrying when another route will be tried, with the kind of the error that refused it."""
    with ctx.db() as db:
        run = store.step_started(
            session=db,
            renewal_id=renewal_id,
            fmc=fmc,
            step=step,
            device=device,
            task_id=task_id,
            route=route,
            who=who,
            now=ctx.now(),
        )
    record = StepRecord(run.id or 0, route)
    try:
        yield record
    except PushRefusedError as exc:
        state: StepState = "retrying" if exc.cause_retryable and may_retry else "refused"
        finish(ctx, record, state, error_kind=exc.cause_kind, message=redact(str(exc)))
        raise
    except SftrenewError as exc:
        state = "retrying" if exc.retryable and may_retry else "failed"
        finish(ctx, record, state, error_kind=type(exc).__name__, message=redact(str(exc)))
        raise
    except Exception as exc:
        finish(
            ctx, record, "failed", error_kind=type(exc).__name__, message="internal error; see the worker log"
        )
        raise
    if not record.done:
        finish(ctx, record, "succeeded")


def finish(
    ctx: Context,
    record: StepRecord,
    state: StepState,
    *,
    error_kind: str | None = None,
    message: str | None = None,
) -> None:
    with ctx.db() as db:
        store.step_finished(
            session=db,
            step_run_id=record.step_run_id,
            state=state,
            error_kind=error_kind,
            message=message,
            route=record.route,
            now=ctx.now(),
        )
    record.done = True


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (half to all of the step), so a fleet does not retry in step."""
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    return float(step / 2 + step / 2 * secrets.randbelow(1001) / 1000)
