"""Push rounds: "every push of this FMC has settled, so verify runs once", counted in the database.

A Celery chord counts this in Redis, which a restart may empty, and skips its body when a push fails. Here a
round is a set of slots, one per device: opened once (`open_push_round`), each slot settled once whatever the
outcome (`settle_push`), and the settler that leaves no slot open claims the round's verify in the same
transaction, so exactly one caller learns that it must enqueue verify. A reconciler re-sends the pushes of
`unsettled` slots, and `claim_verify` claims a round complete from the start (no devices) or by other means.

Round 1 pushes to every device; a later round retries some (the failed ones). Only the FMC's newest round
may claim its verify: a round superseded by a later one is verified by that one.

Races are decided by the database. Every writer here starts its transaction by taking the FMC's row (an
UPDATE: a row lock on PostgreSQL, the database's write lock on SQLite), then writes and claims with
conditional UPDATEs. Without that, two tasks settling the last two slots at once would each still see the
other's slot open (PostgreSQL reads committed rows only) and neither would claim the verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, exists, update
from sqlmodel import Session, col, select

from pipeline.store.tables import SLOT_OUTCOMES, PushSlot, RenewalFmc, SlotOutcome, require_utc
from pipeline.store.transactions import committed, moved

_NAME_CHARS = 100


def _is_fmc(renewal_id: str, fmc: str) -> ColumnElement[bool]:
    return and_(col(RenewalFmc.renewal_id) == renewal_id, col(RenewalFmc.fmc) == fmc)


def _in_round(renewal_id: str, fmc: str, round_: int | None) -> ColumnElement[bool]:
    same_fmc = and_(col(PushSlot.renewal_id) == renewal_id, col(PushSlot.fmc) == fmc)
    return same_fmc if round_ is None else and_(same_fmc, col(PushSlot.round) == round_)


def _open_slot(renewal_id: str, fmc: str, round_: int) -> ColumnElement[bool]:
    return and_(_in_round(renewal_id, fmc, round_), col(PushSlot.settled_at_utc).is_(None))


# Built once, with bound parameters (every push settles a slot: building a statement and its cache key costs
# more of the worker's CPU than running it); neither changes a value an object loaded in the session holds.
_TAKE_FMC = (
    update(RenewalFmc)
    .where(_is_fmc(bindparam("of_renewal"), bindparam("of_fmc")))  # type: ignore[arg-type]
    .values(verify_round=RenewalFmc.verify_round)
    .execution_options(synchronize_session=False)
)
_SETTLE = (
    update(PushSlot)
    .where(
        _open_slot(bindparam("of_renewal"), bindparam("of_fmc"), bindparam("of_round")),  # type: ignore[arg-type]
        col(PushSlot.device) == bindparam("of_device"),
    )
    .values(settled_at_utc=bindparam("to_at"), outcome=bindparam("to_outcome"))
    # A settled slot is never read back from the session that settled it (`slot` reads by primary key).
    .execution_options(synchronize_session=False)
)


def _take_fmc(session: Session, renewal_id: str, fmc: str) -> None:
    """Hold the FMC's row until the transaction ends (an UPDATE that changes nothing); LookupError when the
    renewal has no such FMC. Must be the transaction's first write: on SQLite it is what takes the lock."""
    if session.exec(_TAKE_FMC, params={"of_renewal": renewal_id, "of_fmc": fmc}).rowcount != 1:
        raise LookupError(f"renewal {renewal_id!r} has no FMC {fmc!r}")


def _claim(session: Session, renewal_id: str, fmc: str, round_: int) -> bool:
    """Claim the round's verify when the round is the FMC's newest, no slot of it is open and no verify of
    it (or of a later round) was claimed (not committed)."""
    statement = (
        update(RenewalFmc)
        .where(
            _is_fmc(renewal_id, fmc),
            col(RenewalFmc.push_round) == round_,
            col(RenewalFmc.verify_round) < round_,
            ~exists().where(_open_slot(renewal_id, fmc, round_)),
        )
        .values(verify_round=round_)
    )
    return session.exec(statement).rowcount == 1


def _check_round(round_: int) -> None:
    if round_ < 1:
        raise ValueError(f"push rounds are numbered from 1, got {round_}")


def _check_devices(devices: Sequence[str]) -> list[str]:
    names = list(devices)
    for name in names:
        if not name or len(name) > _NAME_CHARS:
            raise ValueError(f"a device name must be 1 to {_NAME_CHARS} characters, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"a push round names each device once, got {names}")
    return names


def open_push_round(
    *, session: Session, renewal_id: str, fmc: str, round: int, devices: Sequence[str], now: datetime
) -> bool:
    """Open push round `round` of the FMC with one open slot per device: True for the caller that opened it,
    False when it (or a later round) is open already (a redelivered task: its devices are ignored). Rounds
    open in order: round N before round N-1 is a ValueError. A round of no devices is complete at once
    (claim its verify with `claim_verify`)."""
    _check_round(round)
    names = _check_devices(devices)
    now = require_utc(now)
    with committed(session):
        _take_fmc(session, renewal_id, fmc)
        advance = update(RenewalFmc).where(_is_fmc(renewal_id, fmc), col(RenewalFmc.push_round) == round - 1)
        if session.exec(advance.values(push_round=round)).rowcount != 1:
            newest = push_round(session=session, renewal_id=renewal_id, fmc=fmc)
            if newest < round - 1:
                raise ValueError(
                    f"{fmc}: push round {round} cannot open before round {round - 1} (newest: {newest})"
                )
            return False
        session.add_all(PushSlot(renewal_id=renewal_id, fmc=fmc, round=round, device=name) for name in names)
        moved(session, renewal_id, now)
    return True


def settle_push(
    *,
    session: Session,
    renewal_id: str,
    fmc: str,
    round: int,
    device: str,
    outcome: SlotOutcome,
    now: datetime,
) -> bool:
    """Settle the device's slot in the round (succeeded, skipped or failed: settled either way). True only for
    the one caller whose settle left no slot of the round open and so claimed its verify: that caller enqueues
    verify. Settling a settled slot again changes nothing and is False (a redelivered task). LookupError for
    a slot the round does not have."""
    if outcome not in SLOT_OUTCOMES:
        raise ValueError(f"a push settles as one of {SLOT_OUTCOMES}, not {outcome!r}")
    now = require_utc(now)
    settle = {"of_renewal": renewal_id, "of_fmc": fmc, "of_round": round, "of_device": device}
    with committed(session):
        _take_fmc(session, renewal_id, fmc)
        if session.exec(_SETTLE, params=settle | {"to_at": now, "to_outcome": outcome}).rowcount != 1:
            if session.get(PushSlot, (renewal_id, fmc, round, device)) is None:
                raise LookupError(f"{fmc}: push round {round} has no slot for {device!r}")
            return False
        claimed = _claim(session, renewal_id, fmc, round)
        moved(session, renewal_id, now)
    return claimed


def claim_verify(*, session: Session, renewal_id: str, fmc: str, round: int) -> bool:
    """Claim the round's verify on its own (for an empty round, or a reconciler): True only for the one caller
    that claims it, when the round is the FMC's newest, every slot of it is settled and its verify was not
    claimed before (by this or by `settle_push`)."""
    _check_round(round)
    with committed(session):
        _take_fmc(session, renewal_id, fmc)
        return _claim(session, renewal_id, fmc, round)


def push_round(*, session: Session, renewal_id: str, fmc: str) -> int:
    """The FMC's newest open push round (0: none yet), as the database has it now; LookupError for no FMC."""
    query = select(RenewalFmc.fmc, RenewalFmc.push_round).where(_is_fmc(renewal_id, fmc))
    found = session.exec(query).first()
    if found is None:
        raise LookupError(f"renewal {renewal_id!r} has no FMC {fmc!r}")
    return found[1]


def round_complete(*, session: Session, renewal_id: str, fmc: str, round: int) -> bool:
    """Whether the round was opened and none of its slots is open (whoever claimed its verify)."""
    if push_round(session=session, renewal_id=renewal_id, fmc=fmc) < round:
        return False
    return not unsettled(session=session, renewal_id=renewal_id, fmc=fmc, round=round)


def unsettled(*, session: Session, renewal_id: str, fmc: str, round: int) -> list[str]:
    """The devices whose push in the round has not settled yet, sorted: what a reconciler re-sends."""
    query = select(PushSlot.device).where(_open_slot(renewal_id, fmc, round)).order_by(col(PushSlot.device))
    return list(session.exec(query).all())


def slot(*, session: Session, renewal_id: str, fmc: str, round: int, device: str) -> PushSlot | None:
    """The device's slot in the round; None when the round has none for it. One row, where `slots` reads the
    whole round: every push asks this of its own slot."""
    return session.get(PushSlot, (renewal_id, fmc, round, device))


def slots(*, session: Session, renewal_id: str, fmc: str, round: int | None = None) -> list[PushSlot]:
    """The FMC's push slots (of one round, or of all), by round then device."""
    query = select(PushSlot).where(_in_round(renewal_id, fmc, round))
    return list(session.exec(query.order_by(col(PushSlot.round), col(PushSlot.device))).all())
