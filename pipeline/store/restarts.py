"""A peer's push facts: the write this renewal began on its files for one FMC, and the restart after it.

Files the push finds new were either pushed by generate_certs.pl over a live tunnel (which picks them up at
its next reconnect: nothing to do) or written by an attempt of this renewal that may have died before its
restart (the device would keep its old sftunnel process for good). Only the record can tell the two apart,
so the push records its intent to write before the first file changes (`record_write_started`, which also
clears any earlier restart) and the restart once `pmtool` returned 0 (`record_restarted`). One row per
renewal, FMC and device, whatever the attempt or round; no row: this renewal never wrote that peer's files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, case, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from pipeline.material import FilesBefore
from pipeline.store.fmcs import renewal_fmc
from pipeline.store.tables import PushRestart, require_utc
from pipeline.store.transactions import committed, moved


def upsert(
    session: Session,
    row: SQLModel,
    changes: Mapping[str, object],
    *,
    after: Callable[[], None] = lambda: None,
) -> None:
    """INSERT `row`, or, when a row with its primary key exists, UPDATE that row with `changes` (column
    values or expressions on the existing row); then `after`, in the same transaction (committed).

    One statement (`INSERT ... ON CONFLICT DO UPDATE`, which SQLite and PostgreSQL both have), so a twin
    attempt inserting the same row at the same moment makes no constraint violation to retry; run on the
    table, not through the ORM, which would evaluate it against every object the session holds."""
    table = type(row).__table__  # type: ignore[attr-defined]  # SQLModel sets it on every table class
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    statement = (
        dialect.insert(table)
        .values({column.name: getattr(row, column.name) for column in table.columns})
        .on_conflict_do_update(index_elements=list(table.primary_key.columns), set_=dict(changes))
    )
    with committed(session):
        session.exec(statement)
        after()


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
) -> None:
    """Record, before the first file changes, that this renewal begins writing the device's files for `fmc`;
    a restart recorded for an earlier write no longer counts (cleared). `before` (what the peer held, and the
    suffix of the copies the push keeps) is kept from the renewal's first write only: a later write never
    changes it, as the push never overwrites a copy. LookupError for an FMC the renewal does not have."""
    now = require_utc(now)
    renewal_fmc(session=session, renewal_id=renewal_id, fmc=fmc)
    facts = _before_columns(before)
    first = col(PushRestart.before_suffix).is_(None)
    kept = {name: case((first, value), else_=getattr(PushRestart, name)) for name, value in facts.items()}
    changes = {"write_started_at_utc": now, "restarted_at_utc": None, **(kept if before is not None else {})}
    new = PushRestart(renewal_id=renewal_id, fmc=fmc, device=device, write_started_at_utc=now)
    for name, value in facts.items():
        setattr(new, name, value)
    upsert(session, new, changes, after=lambda: moved(session, renewal_id, now))


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


def record_restarted(*, session: Session, renewal_id: str, fmc: str, device: str, now: datetime) -> None:
    """Record that sftunnel restarted on the device after this renewal's latest write of its files for `fmc`.
    LookupError when no write was recorded: a restart follows a write, never stands alone."""
    now = require_utc(now)
    row = {"of_renewal": renewal_id, "of_fmc": fmc, "of_device": device}
    with committed(session):
        if session.exec(_RESTARTED, params=row | {"to_at": now}).rowcount != 1:
            raise LookupError(f"renewal {renewal_id!r}: no write recorded on {device!r} for {fmc!r}")
        moved(session, renewal_id, now)


# Built once, with bound parameters: every push that writes records its restart, and building a statement and
# its cache key costs more of the worker's CPU than running it. A row already loaded in the session is left
# as it was loaded (no ORM evaluation): read the facts in another session (a push's end never reads them).
_RESTARTED = (
    update(PushRestart)
    .where(_is_row(bindparam("of_renewal"), bindparam("of_fmc"), bindparam("of_device")))  # type: ignore[arg-type]
    .values(restarted_at_utc=bindparam("to_at"))
    .execution_options(synchronize_session=False)
)
