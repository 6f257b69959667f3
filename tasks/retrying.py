"""Pushing again to devices whose push gave up: a new push round per FMC, opened in the record.

Two doors lead here, and they must do the same: `sftrenew retry` (the operator names the renewal, maybe the
devices) and a push message delivered for a slot that settled as failed (Flower's re-apply, a redelivered
message: `pipeline.flow.push_delivery` says `Reopen`). Either way, `pipeline.flow.retry_devices` decides
which devices go into which FMC's next round, from the record; the renewal is reopened if it ended (unless
another renewal of its pair runs), each round is opened with its FMC set running, and who asked is recorded.
Whoever sends the round's pushes, the round's last settle claims its verify, as in round 1.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def open_rounds(
    db: Session,
    renewal: store.Renewal,
    plans: Sequence[flow.RetryRound],
    *,
    who: str,
    now: datetime,
) -> None:
    """Reopen the renewal if it ended, then open each plan's round (its FMC running again) and record who
    asked. ConfigError, with nothing changed, when the renewal ended and another renewal of its pair runs."""
    if not flow.takes_step(renewal.state) and not store.resume_renewal(
        session=db, renewal_id=renewal.id, now=now
    ):
        raise ConfigError(f"another renewal of pair {renewal.pair} is running; retry this one after it ends")
    for plan in plans:
        store.open_push_round(
            session=db, renewal_id=renewal.id, fmc=plan.fmc, round=plan.round, devices=plan.devices, now=now
        )
        store.set_fmc_state(session=db, renewal_id=renewal.id, fmc=plan.fmc, state="running", now=now)
        store.add_event(
            session=db,
            renewal_id=renewal.id,
            action="retry",
            now=now,
            who=who,
            fmc=plan.fmc,
            detail=f"round {plan.round}: {', '.join(plan.devices)}",
        )
