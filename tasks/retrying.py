"""Pushing again to devices whose push gave up: a new push round per FMC, opened in the record.

Two doors lead here, and they must do the same: `sftrenew retry` (the operator names the renewal, maybe the
devices) and a push message delivered for a slot that settled as failed (Flower's re-apply, a redelivered
message: `pipeline.flow.push_delivery` says `Reopen`). Either way, `pipeline.flow.retry_devices` decides
which devices go into which FMC's next round, from the record; the renewal is reopened if it ended (unless
another renewal of its pair runs), each round is opened with its FMC set running, and who asked is recorded.
Whoever sends the round's pushes, the round's last settle claims its verify, as in round 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from sqlmodel import Session

from pipeline import flow, store
from pipeline.errors import ConfigError

_STEP_STATES: dict[str, flow.StepState] = {state: state for state in get_args(flow.StepState)}


def push_history(db: Session, renewal_id: str) -> list[flow.PushHistory]:
    """What `flow.retry_devices` decides from: per FMC, whether it regenerated, its newest push round, and
    every device it pushed to (a slot in some round) with the state of its last push attempt."""
    last: dict[tuple[str, str], tuple[int, flow.StepState]] = {}
    for run in store.steps_of(session=db, renewal_id=renewal_id):
        if run.step == "push" and run.device and run.state in _STEP_STATES:
            seen = last.get((run.fmc, run.device))
            if seen is None or run.attempt > seen[0]:
                last[(run.fmc, run.device)] = (run.attempt, _STEP_STATES[run.state])
    history = []
    for fmc in store.fmcs_of(session=db, renewal_id=renewal_id):
        devices = {slot.device for slot in store.slots(session=db, renewal_id=renewal_id, fmc=fmc.fmc)}
        devices |= {device for f, device in last if f == fmc.fmc}
        states = {d: last[(fmc.fmc, d)][1] if (fmc.fmc, d) in last else None for d in sorted(devices)}
        history.append(flow.PushHistory(fmc.fmc, fmc.ca_after_sha256 is not None, fmc.push_round, states))
    return history


#: How often a round another caller opened first is planned again before giving up (each try opens the
#: next round, so only a storm of concurrent retries of the same FMC could use them all).
_TRIES = 5


@dataclass(frozen=True)
class Opened:
    """What `open_rounds` did: the rounds it opened (whose pushes its caller sends), and the devices it found
    in an open slot of a round another caller had just opened (that caller sends their pushes)."""

    rounds: tuple[flow.RetryRound, ...]
    #: (FMC, device) -> the round, opened by someone else, in which the device's slot is open.
    joined: Mapping[tuple[str, str], int]

    def round_of(self, fmc: str, device: str) -> int | None:
        """The round in which the device's push is open now, by this call or another."""
        for plan in self.rounds:
            if plan.fmc == fmc and device in plan.devices:
                return plan.round
        return self.joined.get((fmc, device))


def open_rounds(
    db: Session,
    renewal: store.Renewal,
    plans: Sequence[flow.RetryRound],
    *,
    who: str,
    now: datetime,
) -> Opened:
    """Reopen the renewal if it ended, then open each plan's round (its FMC running again) and record who
    asked. ConfigError, with nothing changed, when the renewal ended and another renewal of its pair runs.

    A plan is made from the record before its round is opened, so two callers (a retry and a redelivered
    push, or two pushes of different devices delivered again at once) may plan the same round number for
    different devices; the round opens for only one of them (`store.open_push_round`). The other's devices are
    planned again from the record as it is then: a device the winner's round holds in an open slot is left to
    the winner; the rest go into the next round. No device is left without a slot to push in."""
    if not flow.takes_step(renewal.state) and not store.resume_renewal(
        session=db, renewal_id=renewal.id, now=now
    ):
        raise ConfigError(f"another renewal of pair {renewal.pair} is running; retry this one after it ends")
    opened: list[flow.RetryRound] = []
    joined: dict[tuple[str, str], int] = {}
    pending = list(plans)
    for _ in range(_TRIES):
        raced = []
        for plan in pending:
            if _open(db, renewal.id, plan, who=who, now=now):
                opened.append(plan)
            else:
                raced.append(plan)
        pending = []
        for plan in raced:
            newest = store.push_round(session=db, renewal_id=renewal.id, fmc=plan.fmc)
            held = set(store.unsettled(session=db, renewal_id=renewal.id, fmc=plan.fmc, round=newest))
            joined.update({(plan.fmc, d): newest for d in plan.devices if d in held})
            rest = tuple(d for d in plan.devices if d not in held)
            if rest:
                pending.append(flow.RetryRound(plan.fmc, newest + 1, rest))
        if not pending:
            return Opened(tuple(opened), joined)
    names = ", ".join(f"{p.fmc}: {', '.join(p.devices)}" for p in pending)
    raise ConfigError(
        f"renewal {renewal.id}: other retries kept opening the next push round first ({names}); retry again"
    )


def _open(db: Session, renewal_id: str, plan: flow.RetryRound, *, who: str, now: datetime) -> bool:
    if not store.open_push_round(
        session=db, renewal_id=renewal_id, fmc=plan.fmc, round=plan.round, devices=plan.devices, now=now
    ):
        return False
    store.set_fmc_state(session=db, renewal_id=renewal_id, fmc=plan.fmc, state="running", now=now)
    store.add_event(
        session=db,
        renewal_id=renewal_id,
        action="retry",
        now=now,
        who=who,
        fmc=plan.fmc,
        detail=f"round {plan.round}: {', '.join(plan.devices)}",
    )
    return True
