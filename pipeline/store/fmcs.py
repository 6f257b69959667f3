"""The FMCs of a renewal: the CA each started from, the claim that makes regeneration run exactly once, and
the CA it made.

The claim is a conditional UPDATE (`... WHERE regen_token IS NULL`): the database decides who is first, on
SQLite (which has no SELECT ... FOR UPDATE) as on PostgreSQL. Like every writer of the store, these commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlmodel import Session, col, select

from pipeline.store.renewals import committed, moved
from pipeline.store.tables import FMC_STATES, FmcState, RenewalFmc, require_utc


def fmcs_of(*, session: Session, renewal_id: str) -> list[RenewalFmc]:
    """The renewal's FMCs, primary first (the order they are renewed in)."""
    query = select(RenewalFmc).where(col(RenewalFmc.renewal_id) == renewal_id).order_by(col(RenewalFmc.role))
    return list(session.exec(query).all())


def renewal_fmc(*, session: Session, renewal_id: str, fmc: str) -> RenewalFmc:
    """One FMC of a renewal; LookupError when the renewal has no such FMC."""
    row = session.get(RenewalFmc, (renewal_id, fmc))
    if row is None:
        raise LookupError(f"renewal {renewal_id!r} has no FMC {fmc!r}")
    return row


def _update_if(
    session: Session, renewal_id: str, fmc: str, condition: ColumnElement[bool], values: dict[str, Any]
) -> bool:
    """Update the FMC row when `condition` holds (not committed); True when it did."""
    statement = (
        update(RenewalFmc)
        .where(col(RenewalFmc.renewal_id) == renewal_id, col(RenewalFmc.fmc) == fmc, condition)
        .values(**values)
    )
    return session.exec(statement).rowcount == 1


def _first_value_wins(
    session: Session, renewal_id: str, fmc: str, column: str, value: str, extra: dict[str, Any]
) -> None:
    """Set `column` once: the same value again is a no-op (a task redone), another value a ValueError."""
    current = col(getattr(RenewalFmc, column))
    if _update_if(session, renewal_id, fmc, current.is_(None), {column: value, **extra}):
        return
    row = renewal_fmc(session=session, renewal_id=renewal_id, fmc=fmc)
    found = getattr(row, column)
    if found != value:
        raise ValueError(f"{fmc}: {column} is recorded as {found}, refusing to overwrite it with {value}")


def record_ca_before(
    *, session: Session, renewal_id: str, fmc: str, ca_sha256: str, fmc_uuid: str | None = None, now: datetime
) -> None:
    """The fingerprint of the CA the FMC held at backup: what the regeneration must start from."""
    extra = {"fmc_uuid": fmc_uuid} if fmc_uuid is not None else {}
    with committed(session):
        _first_value_wins(session, renewal_id, fmc, "ca_before_sha256", ca_sha256, extra)
        moved(session, renewal_id, now)


def claim_regeneration(*, session: Session, renewal_id: str, fmc: str, token: str, now: datetime) -> bool:
    """Whether the caller may regenerate this FMC's CA: True for the first claimer and for a retry of the same
    task (same `token`, e.g. the Celery task id); False for anyone else."""
    if not token:
        raise ValueError("a regeneration claim needs a token (the claiming task's id)")
    claimed = {"regen_token": token, "regen_claimed_at_utc": require_utc(now)}
    with committed(session):
        won = _update_if(session, renewal_id, fmc, col(RenewalFmc.regen_token).is_(None), claimed)
        if not won:
            won = renewal_fmc(session=session, renewal_id=renewal_id, fmc=fmc).regen_token == token
        moved(session, renewal_id, now)
    return won


def record_regeneration(
    *, session: Session, renewal_id: str, fmc: str, ca_after_sha256: str, now: datetime
) -> None:
    """The CA the regeneration made. Only after a claim; recording the same CA again is a no-op, another CA a
    ValueError (exactly once means one new CA per FMC per renewal)."""
    row = renewal_fmc(session=session, renewal_id=renewal_id, fmc=fmc)
    if row.regen_token is None:
        raise ValueError(f"{fmc}: a regeneration is recorded only after claim_regeneration")
    done = {"regen_done_at_utc": require_utc(now)}
    with committed(session):
        _first_value_wins(session, renewal_id, fmc, "ca_after_sha256", ca_after_sha256, done)
        moved(session, renewal_id, now)


def set_fmc_state(*, session: Session, renewal_id: str, fmc: str, state: FmcState, now: datetime) -> None:
    """Where this FMC's part of the renewal stands (pending, running, succeeded, failed, partial)."""
    if state not in FMC_STATES:
        raise ValueError(f"an FMC's state is one of {FMC_STATES}, not {state!r}")
    with committed(session):
        if not _update_if(session, renewal_id, fmc, col(RenewalFmc.state).is_not(None), {"state": state}):
            raise LookupError(f"renewal {renewal_id!r} has no FMC {fmc!r}")
        moved(session, renewal_id, now)
