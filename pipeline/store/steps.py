"""Step runs: every step, every device, every attempt, with its route and outcome.

The store numbers the attempts (1, 2, ... per renewal, FMC, device and step) and a unique index keeps the
numbers honest when a redelivered task races its twin; "the last attempt" is then the highest number, which
is what `failed_pushes` (and so `sftrenew retry`) works from. Messages arrive redacted (the caller's job) and
are cut to `MESSAGE_CHARS` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from pipeline.store.fmcs import renewal_fmc
from pipeline.store.tables import (
    GAVE_UP_STATES,
    MESSAGE_CHARS,
    STEP_STATES,
    STEPS,
    StepName,
    StepRun,
    StepState,
    require_utc,
)
from pipeline.store.transactions import committed, in_unit, loaded, moved

#: How often step_started renumbers when a concurrent twin took the same attempt number.
_NUMBER_TRIES = 5
#: What an attempt closed as interrupted says.
INTERRUPTED_MESSAGE = "its worker stopped (killed or lost); a later attempt took the step over"


def _device_in(devices: Sequence[str | None]) -> ColumnElement[bool]:
    return or_(*(col(StepRun.device).is_(None) if d is None else col(StepRun.device) == d for d in devices))


def interrupt_started(  # noqa: PLR0913 - keyword-only: which attempts, and when
    *,
    session: Session,
    renewal_id: str,
    fmc: str,
    steps: Sequence[StepName],
    devices: Sequence[str | None] = (None,),
    task_id: str | None = None,
    other_than: str | None = None,
    now: datetime,
) -> list[str | None]:
    """Close as `interrupted` the attempts still `started` of `steps` on `devices` (None: the FMC itself):
    their worker died and the step is being taken over. With `task_id`, only that task's (a redelivered task
    takes over its own); with `other_than`, all but that task's (a takeover). Returns the closed attempts'
    task ids (so that the caller can tell Celery's own record too)."""
    if not steps or not devices:
        return []
    query = select(StepRun).where(
        col(StepRun.renewal_id) == renewal_id,
        col(StepRun.fmc) == fmc,
        col(StepRun.step).in_(steps),
        col(StepRun.state) == "started",
        _device_in(devices),
    )
    if task_id is not None:
        query = query.where(col(StepRun.task_id) == task_id)
    if other_than is not None:
        query = query.where(or_(col(StepRun.task_id).is_(None), col(StepRun.task_id) != other_than))
    with committed(session):
        rows = list(session.exec(query).all())
        for row in rows:
            row.state, row.finished_at_utc = "interrupted", require_utc(now)
            row.message = INTERRUPTED_MESSAGE
        if rows:
            moved(session, renewal_id, now)
    return [row.task_id for row in rows]


def _next_attempt(session: Session, renewal_id: str, fmc: str, device: str | None, step: str) -> int:
    params = {"renewal_id": renewal_id, "fmc": fmc, "step": step}
    if device is None:
        return (session.exec(_LAST_FMC_ATTEMPT, params=params).one() or 0) + 1
    return (session.exec(_LAST_DEVICE_ATTEMPT, params=params | {"device": device}).one() or 0) + 1


# Built once, with bound parameters: every push numbers its attempt, and building a statement and its cache
# key costs more of the worker's CPU than running it.
_LAST_ATTEMPT = select(func.max(StepRun.attempt)).where(
    col(StepRun.renewal_id) == bindparam("renewal_id"),
    col(StepRun.fmc) == bindparam("fmc"),
    col(StepRun.step) == bindparam("step"),
)
_LAST_FMC_ATTEMPT = _LAST_ATTEMPT.where(col(StepRun.device).is_(None))
_LAST_DEVICE_ATTEMPT = _LAST_ATTEMPT.where(col(StepRun.device) == bindparam("device"))


def step_started(  # noqa: PLR0913 - keyword-only, one per column the caller knows; no bundle to build
    *,
    session: Session,
    renewal_id: str,
    fmc: str,
    step: StepName,
    device: str | None = None,
    task_id: str | None = None,
    route: str | None = None,
    who: str | None = None,
    now: datetime,
) -> StepRun:
    """A new attempt of `step` on `device` (None: the FMC itself), numbered after the ones before it. A push
    always names its device. An earlier attempt of the same task still `started` died with its worker (the
    message was redelivered): it is closed as `interrupted` first."""
    if step not in STEPS:
        raise ValueError(f"a step is one of {STEPS}, not {step!r}")
    if step == "push" and device is None:
        raise ValueError("a push step names the device it pushes to")
    renewal_fmc(session=session, renewal_id=renewal_id, fmc=fmc)
    started_at_utc = require_utc(now)
    if task_id is not None:
        interrupt_started(
            session=session,
            renewal_id=renewal_id,
            fmc=fmc,
            steps=(step,),
            devices=(device,),
            task_id=task_id,
            now=started_at_utc,
        )
    for tries_left in reversed(range(_NUMBER_TRIES)):
        row = StepRun(
            renewal_id=renewal_id,
            fmc=fmc,
            device=device,
            step=step,
            attempt=_next_attempt(session, renewal_id, fmc, device, step),
            route=route,
            task_id=task_id,
            who=who,
            started_at_utc=started_at_utc,
        )
        try:
            with committed(session):
                session.add(row)
                moved(session, renewal_id, now)
        except IntegrityError:
            if not tries_left or in_unit(session):  # in a unit, the unit runs again (`atomically`)
                raise
        else:
            loaded(session, row)
            return row
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def step_finished(
    *,
    session: Session,
    step_run_id: int,
    state: StepState,
    error_kind: str | None = None,
    message: str | None = None,
    route: str | None = None,
    now: datetime,
) -> StepRun:
    """How an attempt ended: succeeded, failed, skipped, retrying (failed, and a retry is on its way), or
    refused (a push whose session never opened, so nothing was written, and no retry is on its way).
    `route` records the route it ended on, when it was learned during the attempt."""
    if state not in STEP_STATES or state == "started":
        raise ValueError(f"a step finishes as one of {STEP_STATES[1:]}, not {state!r}")
    row = session.get(StepRun, step_run_id)
    if row is None:
        raise LookupError(f"no step run {step_run_id} in the database")
    with committed(session):
        row.state, row.finished_at_utc = state, require_utc(now)
        row.error_kind = error_kind
        row.message = _cut(message)
        if route is not None:
            row.route = route
        moved(session, row.renewal_id, now)
    loaded(session, row)
    return row


def _cut(message: str | None) -> str | None:
    if message is None or len(message) <= MESSAGE_CHARS:
        return message
    return message[: MESSAGE_CHARS - 1] + "…"


def steps_of(*, session: Session, renewal_id: str, fmc: str | None = None) -> list[StepRun]:
    """Every attempt of every step of a renewal (or of one of its FMCs), in the order they started."""
    query = select(StepRun).where(col(StepRun.renewal_id) == renewal_id)
    if fmc is not None:
        query = query.where(col(StepRun.fmc) == fmc)
    return list(session.exec(query.order_by(col(StepRun.id))).all())


def failed_pushes(*, session: Session, renewal_id: str, fmc: str | None = None) -> list[StepRun]:
    """The last push attempt of every device whose last push attempt failed or was refused (a device that
    failed and then succeeded is not here; one still retrying is not either). Ordered by FMC, then device."""
    last = (
        select(StepRun.fmc, StepRun.device, func.max(StepRun.attempt).label("attempt"))
        .where(col(StepRun.renewal_id) == renewal_id, col(StepRun.step) == "push")
        .group_by(col(StepRun.fmc), col(StepRun.device))
        .subquery()
    )
    query = (
        select(StepRun)
        .join(
            last,
            and_(
                col(StepRun.fmc) == last.c.fmc,
                col(StepRun.device) == last.c.device,
                col(StepRun.attempt) == last.c.attempt,
            ),
        )
        .where(col(StepRun.renewal_id) == renewal_id, col(StepRun.step) == "push")
        .where(col(StepRun.state).in_(GAVE_UP_STATES))
        .order_by(col(StepRun.fmc), col(StepRun.device))
    )
    if fmc is not None:
        query = query.where(col(StepRun.fmc) == fmc)
    return list(session.exec(query).all())
