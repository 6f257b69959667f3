"""Transactions: each writer's own commit, or one commit for several writers (`atomically`).

Every writing function of the store commits before it returns (`committed`), so that a record made is a record
kept whatever happens to the worker next. A caller that records several things that belong together (a push
attempt's end: its restart, what the device held, the attempt's end, its slot settled) runs them in
`atomically` instead: one transaction, so that a worker dying half-way leaves none of them, and one commit
instead of four (at 300 FTDs, each commit on SQLite is a write of the database file, and each ORM statement
about 1 ms of the worker's CPU).

Inside `atomically`, `committed` flushes instead of committing (so row counts, generated ids and constraint
violations surface where they did), `moved` is done once, at the end, for the latest time given; and a
constraint violation (a twin attempt inserting the same row) rolls back the whole unit, which is run again:
SAVEPOINTs would let a writer retry on its own, but SQLite's Python driver does not nest them inside an open
transaction reliably (it does not emit BEGIN before a SAVEPOINT), so the unit is the smallest thing retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col

from pipeline.store.tables import Renewal, require_utc

T = TypeVar("T")

#: Where a session holds its open unit: the renewals it moved, and the latest time each was moved to.
_UNIT = "sftrenew.unit"
#: How often `atomically` runs a unit again after a twin's constraint violation.
_UNIT_TRIES = 5


def in_unit(session: Session) -> bool:
    """Whether the session runs an `atomically` unit: a writer inside it does not commit, and must not retry
    a constraint violation itself (the transaction it would retry in is the unit's, and is broken)."""
    return _UNIT in session.info


@contextmanager
def committed(session: Session) -> Iterator[None]:
    """Commit what the block wrote, or roll it all back when it raises: a failed write must not leave a
    transaction (on SQLite, the database's write lock) open in the caller's session. Inside `atomically`:
    flush, and leave commit and rollback to the unit."""
    if in_unit(session):
        yield
        session.flush()
        return
    try:
        yield
    except BaseException:
        session.rollback()
        raise
    session.commit()


def loaded(session: Session, row: SQLModel) -> None:
    """Reload `row` after a commit that expired it (a session that expires on commit: the store's own
    sessions, `open_session`, do not, so they skip the SELECT); inside a unit nothing has been committed yet,
    and the row is as written."""
    if session.expire_on_commit and not in_unit(session):
        session.refresh(row)


def moved(session: Session, renewal_id: str, now: datetime) -> None:
    """Record progress on a renewal (without committing); never moves the mark backwards (worker clocks
    differ). Inside `atomically`, once per renewal when the unit commits."""
    now = require_utc(now)
    unit: dict[str, datetime] | None = session.info.get(_UNIT)
    if unit is not None:
        unit[renewal_id] = max(now, unit.get(renewal_id, now))
        return
    _move(session, renewal_id, now)


#: Built once: every write moves the mark (three times a push), and building the statement and its cache key
#: cost more of the worker's CPU than running it. On the table, not through the ORM: nothing loaded in the
#: session needs the new mark, and the ORM would evaluate the criteria against every object it holds.
_MOVE = (
    update(Renewal.__table__)  # type: ignore[attr-defined]  # SQLModel sets it on every table class
    .where(col(Renewal.id) == bindparam("renewal_id"), col(Renewal.last_progress_utc) < bindparam("now"))
    .values(last_progress_utc=bindparam("to"))
)


def _move(session: Session, renewal_id: str, now: datetime) -> None:
    session.execute(_MOVE, {"renewal_id": renewal_id, "now": now, "to": now})


def atomically(session: Session, work: Callable[[], T]) -> T:
    """`work()`, whose writes commit together or not at all; its result. Run again (up to 5 times) when a
    twin's concurrent insert of the same row makes it violate a constraint. The session must hold no other
    uncommitted work, and `work` must be safe to run again after a rollback (it reads what it decides
    from)."""
    if in_unit(session):
        raise RuntimeError("atomically() inside atomically(): one unit per transaction")
    for tries_left in reversed(range(_UNIT_TRIES)):
        unit: dict[str, datetime] = {}
        session.info[_UNIT] = unit
        try:
            result = work()
            for renewal_id, now in unit.items():
                _move(session, renewal_id, now)
            session.commit()
        except IntegrityError:
            session.rollback()
            if not tries_left:
                raise
        except BaseException:
            session.rollback()
            raise
        else:
            return result
        finally:
            session.info.pop(_UNIT, None)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
