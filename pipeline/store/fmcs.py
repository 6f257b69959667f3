"""The FMCs of a renewal: the CA each started from, the claim that makes regeneration run exactly once, and
the CA it made.

The claim is a conditional UPDATE (`... WHERE regen_token IS NULL`): the database decides who is first, on
SQLite (which has no SELECT ... FOR UPDATE) as on PostgreSQL. A claim whose holder must be dead (taken long
ago, nothing recorded as done) may be taken over, by a conditional UPDATE too. Like every writer of the store,
these commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, update
from sqlmodel import Session, col, select

from pipeline.store.tables import FMC_STATES, FmcState, RenewalFmc, require_utc
from pipeline.store.transactions import committed, moved


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


def _holder(session: Session, renewal_id: str, fmc: str) -> str | None:
    """The claim's holder as the database has it now (a column query, not an object cached in the session)."""
    query = select(RenewalFmc.fmc, RenewalFmc.regen_token).where(
        col(RenewalFmc.renewal_id) == renewal_id, col(RenewalFmc.fmc) == fmc
    )
    found = session.exec(query).first()
    if found is None:
        raise LookupError(f"renewal {renewal_id!r} has no FMC {fmc!r}")
    return found[1]


def claim_regeneration(*, session: Session, renewal_id: str, fmc: str, token: str, now: datetime) -> bool:
    """Whether the caller may regenerate this FMC's CA: True for the first claimer and for a retry of the same
    task (same `token`, e.g. the Celery task id); False for anyone else."""
    if not token:
        raise ValueError("a regeneration claim needs a token (the claiming task's id)")
    now = require_utc(now)
    claimed = {"regen_token": token, "regen_claimed_at_utc": now, "regen_taken_at_utc": now}
    with committed(session):
        won = _update_if(session, renewal_id, fmc, col(RenewalFmc.regen_token).is_(None), claimed)
        if not won:
            won = _holder(session, renewal_id, fmc) == token
        moved(session, renewal_id, now)
    return won


def take_over_regeneration(
    *, session: Session, renewal_id: str, fmc: str, token: str, stale_before: datetime, now: datetime
) -> bool:
    """Take the regeneration claim from a holder that must be dead: it took the claim before `stale_before`
    and no regeneration is recorded as done. True when taken, and for the holder itself (same `token`);
    False when the claim is fresh, done, or was never made (claim_regeneration makes the first one).

    The first claim's time (`regen_claimed_at_utc`) stays, for the record; whose CA the FMC holds is decided
    by the recorded intent (`record_regeneration_intent`), never by a time. Staleness is measured from when
    the current holder took the claim, which a takeover moves: of two racing takers one wins, and the winner
    is not itself stale at once.
    """
    if not token:
        raise ValueError("a regeneration takeover needs a token (the taking task's id)")
    stale_before = require_utc(stale_before, "stale_before")
    condition = and_(
        col(RenewalFmc.regen_done_at_utc).is_(None),
        col(RenewalFmc.regen_token).is_not(None),
        col(RenewalFmc.regen_taken_at_utc) < stale_before,
    )
    taken = {"regen_token": token, "regen_taken_at_utc": require_utc(now)}
    with committed(session):
        won = _update_if(session, renewal_id, fmc, condition, taken)
        if not won:
            won = _holder(session, renewal_id, fmc) == token
        moved(session, renewal_id, now)
    return won


def record_regeneration_intent(
    *, session: Session, renewal_id: str, fmc: str, token: str, now: datetime
) -> bool:
    """The claim's holder (`token`) is about to run generate_certs.pl: recorded before it runs, so that a CA
    found later with no new CA recorded (a worker killed mid-run) is known to be this renewal's, and a CA
    found with no intent recorded is known not to be. False when `token` no longer holds the claim (it was
    taken over) or the regeneration is recorded as done: then the caller must not run it."""
    holds = and_(col(RenewalFmc.regen_token) == token, col(RenewalFmc.regen_done_at_utc).is_(None))
    with committed(session):
        recorded = _update_if(session, renewal_id, fmc, holds, {"regen_intent_at_utc": require_utc(now)})
        if recorded:
            moved(session, renewal_id, now)
    return recorded


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


def begin_fmc(*, session: Session, renewal_id: str, fmc: str, now: datetime) -> bool:
    """Move a pending FMC to running; True only for the one caller that did (two verifies finishing the
    previous FMC, or a verify and the reconciler, must not start it twice)."""
    with committed(session):
        began = _update_if(session, renewal_id, fmc, col(RenewalFmc.state) == "pending", {"state": "running"})
        if began:
            moved(session, renewal_id, now)
    return began
