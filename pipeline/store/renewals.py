"""Renewals: start one (at most one active per FMC pair), move it along, end it, find it again.

Every writing function commits before it returns: an event recorded is an event kept, whatever happens to the
worker next (inside `atomically`, when the unit commits). So a session handed to these functions must not
carry other uncommitted work. Unknown renewal ids are a LookupError; bad arguments (a naive datetime, an
unknown state) a ValueError.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from pipeline.store.tables import FINISHED_STATES, ROLES, Renewal, RenewalFmc, RenewalState, Role, require_utc
from pipeline.store.transactions import committed, moved

#: How often start_renewal tries again when the renewal that blocked it ended before it could be read back.
_START_TRIES = 3
_NAME_CHARS = 100


def _check_name(value: str, what: str) -> None:
    if not value or len(value) > _NAME_CHARS:
        raise ValueError(f"{what} must be 1 to {_NAME_CHARS} characters, got {value!r}")


def _check_fmcs(fmcs: Sequence[tuple[str, Role]]) -> None:
    names = [name for name, _ in fmcs]
    roles = [role for _, role in fmcs]
    for name in names:
        _check_name(name, "an FMC name")
    if not fmcs or len(set(names)) != len(names) or len(set(roles)) != len(roles):
        raise ValueError(f"a renewal needs distinct FMCs with distinct roles, got {list(fmcs)}")
    if not set(roles) <= set(ROLES) or "primary" not in roles:
        raise ValueError(f"FMC roles are {ROLES} and a primary is required, got {roles}")


def active_renewal(*, session: Session, pair: str) -> Renewal | None:
    """The queued or running renewal of `pair`, if there is one."""
    return session.exec(select(Renewal).where(col(Renewal.active_pair) == pair)).first()


def start_renewal(
    *, session: Session, pair: str, requested_by: str, fmcs: Sequence[tuple[str, Role]], now: datetime
) -> tuple[Renewal, bool]:
    """A new queued renewal of `pair` and True; or, when one is already active, that one and False.

    No check-then-insert: the insert itself is the check (`active_pair` is UNIQUE), so of two concurrent
    callers exactly one creates a renewal and the other gets it back.
    """
    _check_name(pair, "the pair name")
    _check_fmcs(fmcs)
    now = require_utc(now)
    for attempt in range(_START_TRIES):
        row = Renewal(
            id=str(uuid.uuid4()),
            pair=pair,
            requested_by=requested_by,
            requested_at_utc=now,
            state="queued",
            active_pair=pair,
            last_progress_utc=now,
        )
        try:
            with committed(session):
                session.add(row)
                session.flush()  # the renewal row first: the FMC rows refer to it
                session.add_all(RenewalFmc(renewal_id=row.id, fmc=name, role=role) for name, role in fmcs)
        except IntegrityError:
            active = active_renewal(session=session, pair=pair)
            if active is not None:
                return active, False
            if attempt == _START_TRIES - 1:
                raise
        else:
            session.refresh(row)
            return row, True
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _get(session: Session, renewal_id: str) -> Renewal:
    row = session.get(Renewal, renewal_id)
    if row is None:
        raise LookupError(f"no renewal {renewal_id!r} in the database")
    return row


def mark_running(*, session: Session, renewal_id: str, now: datetime) -> None:
    """A queued renewal's first task started; any other state is left as it is."""
    _get(session, renewal_id)
    queued = col(Renewal.state) == "queued"
    with committed(session):
        session.exec(update(Renewal).where(col(Renewal.id) == renewal_id, queued).values(state="running"))
        moved(session, renewal_id, now)


def touch(*, session: Session, renewal_id: str, now: datetime) -> None:
    """Show the renewal is alive (a long step heartbeats with this): a reconciler will not call it stalled."""
    _get(session, renewal_id)
    with committed(session):
        moved(session, renewal_id, now)


def finish_renewal(*, session: Session, renewal_id: str, state: RenewalState, now: datetime) -> Renewal:
    """End a renewal in `state` (succeeded, failed or partial); the pair is free for another renewal."""
    if state not in FINISHED_STATES:
        raise ValueError(f"a renewal finishes as one of {FINISHED_STATES}, not {state!r}")
    row = _get(session, renewal_id)
    with committed(session):
        row.state, row.active_pair, row.finished_at_utc = state, None, require_utc(now)
        row.last_progress_utc = max(row.last_progress_utc, row.finished_at_utc)
    session.refresh(row)
    return row


def resume_renewal(*, session: Session, renewal_id: str, now: datetime) -> bool:
    """Make a finished renewal running again (`sftrenew retry`). True only for the caller that reopened it:
    False when it is active already or another renewal of its pair is."""
    row = _get(session, renewal_id)
    values = {"state": "running", "active_pair": row.pair, "finished_at_utc": None}
    reopen = (
        update(Renewal)
        .where(col(Renewal.id) == renewal_id, col(Renewal.active_pair).is_(None))
        .values(last_progress_utc=require_utc(now), **values)
    )
    try:
        with committed(session):
            reopened = session.exec(reopen).rowcount == 1
    except IntegrityError:
        return False
    session.refresh(row)
    return reopened


def renewal(*, session: Session, renewal_id: str) -> Renewal | None:
    return session.get(Renewal, renewal_id)


def history(*, session: Session, pair: str | None = None, limit: int = 50) -> list[Renewal]:
    """The newest renewals first (of one pair, or of all)."""
    query = select(Renewal).order_by(col(Renewal.requested_at_utc).desc(), col(Renewal.id)).limit(limit)
    if pair is not None:
        query = query.where(col(Renewal.pair) == pair)
    return list(session.exec(query).all())


def last_renewal(*, session: Session, pair: str | None = None) -> Renewal | None:
    found = history(session=session, pair=pair, limit=1)
    return found[0] if found else None


def stalled(*, session: Session, older_than: timedelta, now: datetime) -> list[Renewal]:
    """Active renewals with no progress recorded for `older_than`: their tasks may have been lost with the
    broker, and the database is what tells. Oldest silence first."""
    cutoff = require_utc(now) - older_than
    query = (
        select(Renewal)
        .where(col(Renewal.active_pair).is_not(None), col(Renewal.last_progress_utc) < cutoff)
        .order_by(col(Renewal.last_progress_utc))
    )
    return list(session.exec(query).all())
