"""A renewal's events: what people did to it and what the reconciler could not do (`RenewalEvent`).

Steps record their own attempts (`steps`); this is the rest of the story an operator or an auditor asks for:
who asked for the renewal, who accepted which stranded device and why it would be stranded, who forced a
renewal that was not due and why, who asked for a retry, and why the reconciler skipped a renewal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from pipeline.store.tables import MESSAGE_CHARS, EventAction, RenewalEvent, require_utc
from pipeline.store.transactions import committed


def add_event(  # noqa: PLR0913 - keyword-only, one per column
    *,
    session: Session,
    renewal_id: str,
    action: EventAction,
    now: datetime,
    who: str | None = None,
    fmc: str | None = None,
    device: str | None = None,
    detail: str | None = None,
) -> RenewalEvent:
    """Record one event (committed); `detail` is cut to what the column holds."""
    if detail is not None and len(detail) > MESSAGE_CHARS:
        detail = detail[: MESSAGE_CHARS - 1] + "…"
    event = RenewalEvent(
        renewal_id=renewal_id,
        at_utc=require_utc(now),
        action=action,
        who=who,
        fmc=fmc,
        device=device,
        detail=detail,
    )
    with committed(session):
        session.add(event)
    session.refresh(event)
    return event


def events_of(*, session: Session, renewal_id: str, action: EventAction | None = None) -> list[RenewalEvent]:
    """The renewal's events, oldest first (of one action when given)."""
    if action is None:
        return list(session.exec(_EVENTS, params={"renewal_id": renewal_id}).all())
    return list(session.exec(_EVENTS_OF_ACTION, params={"renewal_id": renewal_id, "action": action}).all())


# Built once, with bound parameters: every push reads the events (is the renewal paused, or abandoned?), and
# building a statement and its cache key costs more of the worker's CPU than running it.
_EVENTS = (
    select(RenewalEvent)
    .where(col(RenewalEvent.renewal_id) == bindparam("renewal_id"))
    .order_by(col(RenewalEvent.id))
)
_EVENTS_OF_ACTION = _EVENTS.where(col(RenewalEvent.action) == bindparam("action"))


def awaiting_approval(*, session: Session, renewal_id: str) -> bool:
    """The renewal was held for approval at enqueue and nobody approved it yet: no CA may be regenerated."""
    actions = {e.action for e in events_of(session=session, renewal_id=renewal_id)}
    return "hold" in actions and "approve" not in actions


def paused(*, session: Session, renewal_id: str) -> bool:
    """Someone paused the renewal and nobody resumed it since: no new push starts, verify waits."""
    return paused_by(events_of(session=session, renewal_id=renewal_id))


def paused_by(events: Sequence[RenewalEvent]) -> bool:
    """`paused`, from the renewal's events already read (oldest first): a push reads them once for this and
    for whether the renewal was abandoned."""
    switches = [e.action for e in events if e.action in _PAUSING]
    return bool(switches) and switches[-1] == "pause"


_PAUSING = ("pause", "resume")
