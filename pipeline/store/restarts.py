"""A peer's push facts: the write this renewal began on its files for one FMC, and the restart after it.

Files the push finds new were either pushed by generate_certs.pl over a live tunnel (which picks them up at
its next reconnect: nothing to do) or written by an attempt of this renewal that may have died before its
restart (the device would keep its old sftunnel process for good). Only the record can tell the two apart,
so the push records its intent to write before the first file changes (`record_write_started`, which also
clears any earlier restart) and the restart once `pmtool` returned 0 (`record_restarted`). One row per
renewal, FMC and device, whatever the attempt or round; no row: this renewal never wrote that peer's files.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import ColumnElement, Update, and_, case, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from pipeline.material import FilesBefore
from pipeline.store.fmcs import renewal_fmc
from pipeline.store.tables import PushRestart, require_utc
from pipeline.store.transactions import committed, in_unit, moved

#: A twin attempt may insert the row between our UPDATE and INSERT; then the UPDATE is tried once more.
_UPSERT_TRIES = 2


def upsert(
    session: Session, again: Update, row: SQLModel, *, after: Callable[[], None] = lambda: None
) -> None:
    """UPDATE one row, or INSERT `row` when the UPDATE found none, and run `after` in the same transaction
    (committed). A twin may insert the row between the two: then the UPDATE is tried once more."""
    for tries_left in reversed(range(_UPSERT_TRIES)):
        try:
            with committed(session):
                if session.exec(again).rowcount != 1:
                    session.add(row)
                after()
        except IntegrityError:
            if not tries_left or in_unit(session):  # in a unit, the unit runs again (`atomically`)
                raise
        else:
            return


def _is_row(renewal_id: str, fmc: str, device: str) -> ColumnElement[bool]:
    return and_(
        col(PushRestart.renewal_id) == renewal_id,
        col(PushRestart.fmc) == fmc,
        col(PushRestart.device) == device,
    )


def push_restart(*, session: Session, renewal_id: str, fmc: str, device: str) -> PushRestart | None:
    """The facts recorded for the device's push from `fmc` (None: this renewal never began writing there)."""
    return session.get(PushRestart, (renewal_id, fmc, device))


def restarts_of(*, session: Session, renewal_id: str) -> list[PushRestart]:
    """Every push fact of the renewal (each FMC, each device that was written), by FMC then device."""
    query = select(PushRestart).where(col(PushRestart.renewal_id) == renewal_id)
    return list(session.exec(query.order_by(col(PushRestart.fmc), col(PushRestart.device))).all())


def record_write_started(
    *,
    session: Session,
    renewal_id: str,
    fmc: str,
    device: str,
    now: datetime,
    before: FilesBefore | None = None,
) -> PushRestart:
    """Record, before the first file changes, that this renewal begins writing the device's files for `fmc`;
    a restart recorded for an earlier write no longer counts (cleared). `before` (what the peer held, and the
    suffix of the copies the push keeps) is kept from the renewal's first write only: a later write never
    changes it, as the push never overwrites a copy. LookupError for an FMC the renewal does not have."""
    now = require_utc(now)
    renewal_fmc(session=session, renewal_id=renewal_id, fmc=fmc)
    facts = _before_columns(before)
    first = col(PushRestart.before_suffix).is_(None)
    kept = {name: case((first, value), else_=getattr(PushRestart, name)) for name, value in facts.items()}
    again = (
        update(PushRestart)
        .where(_is_row(renewal_id, fmc, device))
        .values(write_started_at_utc=now, restarted_at_utc=None, **(kept if before is not None else {}))
    )
    new = PushRestart(renewal_id=renewal_id, fmc=fmc, device=device, write_started_at_utc=now)
    for name, value in facts.items():
        setattr(new, name, value)
    upsert(session, again, new, after=lambda: moved(session, renewal_id, now))
    return _read_back(session, renewal_id, fmc, device)


def _before_columns(before: FilesBefore | None) -> dict[str, str | None]:
    if before is None:
        return {}
    return {
        "before_folder": before.folder,
        "before_suffix": before.suffix,
        "before_ca_sha256": before.ca_sha256,
        "before_cert_sha256": before.cert_sha256,
        "before_key_sha256": before.key_sha256,
    }


def files_before(row: PushRestart) -> FilesBefore | None:
    """What the row says the peer held before the renewal's first write (None: not recorded, a row written
    by an sftrenew older than these columns)."""
    if row.before_folder is None or row.before_suffix is None:
        return None
    return FilesBefore(
        row.before_folder,
        row.before_suffix,
        row.before_ca_sha256,
        row.before_cert_sha256,
        row.before_key_sha256,
    )


def record_restarted(
    *, session: Session, renewal_id: str, fmc: str, device: str, now: datetime
) -> PushRestart:
    """Record that sftunnel restarted on the device after this renewal's latest write of its files for `fmc`.
    LookupError when no write was recorded: a restart follows a write, never stands alone."""
    now = require_utc(now)
    statement = update(PushRestart).where(_is_row(renewal_id, fmc, device)).values(restarted_at_utc=now)
    with committed(session):
        if session.exec(statement).rowcount != 1:
            raise LookupError(f"renewal {renewal_id!r}: no write recorded on {device!r} for {fmc!r}")
        moved(session, renewal_id, now)
    return _read_back(session, renewal_id, fmc, device)


def _read_back(session: Session, renewal_id: str, fmc: str, device: str) -> PushRestart:
    """The row as the database has it after an UPDATE the session did not apply to its loaded copy: one
    SELECT (a `get` and then a `refresh` made two)."""
    row = session.get(PushRestart, (renewal_id, fmc, device), populate_existing=True)
    assert row is not None  # noqa: S101 - written just before, in this transaction or committed
    return row
