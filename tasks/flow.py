"""How a renewal moves: the canvas of one FMC, what comes after it, and what to send again when work was lost.

The canvas of an FMC is `backup -> validate -> regenerate -> group(push per peer)`: one function builds it,
from the inventory's view of the pair. What Celery cannot be trusted with is kept in the database: the pushes
of a round are counted there (the push that settles the last slot of a round claims the verify, once), the
verify starts the next FMC (primary, then secondary) or ends the renewal, and the reconciler finds renewals
whose messages were lost (a Redis restart) and sends the next piece again from the recorded state. Every task
is idempotent, so sending one again is safe.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from celery import chain, current_app, group
from celery.canvas import Signature

from pipeline import store
from pipeline.inventory import FmcPair, Ftd
from pipeline.steps.validate import peers_of
from pipeline.store import RenewalFmc, RenewalState, StepName, StepRun
from tasks.context import Context
from tasks.queues import CONTROL_QUEUE, push_queue

CONTROL_STEPS: tuple[StepName, ...] = ("backup", "validate", "regenerate")


def _task(name: str, args: tuple[object, ...], *, queue: str, shadow: str) -> Signature:
    """An immutable signature (it ignores its parent's result) named `shadow` in Flower and the logs."""

    return current_app.signature(name, args=args, immutable=True, queue=queue, shadow=shadow)


def shadow(step: str, fmc: str, device: str | None = None) -> str:
    """The name a task shows in Flower and the logs: its step and what it works on. A retry must pass it
    again (Celery does not keep it), or the last attempt, the one that fails, shows as a bare task name."""
    return f"sftrenew.{step}[{fmc}->{device}]" if device else f"sftrenew.{step}[{fmc}]"


def control_step(step: str, renewal_id: str, fmc: str) -> Signature:
    return _task(f"sftrenew.{step}", (renewal_id, fmc), queue=CONTROL_QUEUE, shadow=shadow(step, fmc))


def push_step(
    renewal_id: str, fmc: str, device: str, site: str | None, round_: int, who: str | None
) -> Signature:
    return _task(
        "sftrenew.push",
        (renewal_id, fmc, device, round_, who),
        queue=push_queue(site),
        shadow=shadow("push", fmc, device),
    )


def verify_step(renewal_id: str, fmc: str, round_: int) -> Signature:
    return _task(
        "sftrenew.verify", (renewal_id, fmc, round_), queue=CONTROL_QUEUE, shadow=shadow("verify", fmc)
    )


def site_of(pair: FmcPair, device: str) -> str | None:
    found = next((d for d in pair.ftds if d.name == device), None)
    return found.site if isinstance(found, Ftd) else None


def pushes(
    renewal_id: str, pair: FmcPair, fmc: str, devices: Sequence[str], round_: int, who: str | None = None
) -> Signature:
    return group(push_step(renewal_id, fmc, d, site_of(pair, d), round_, who) for d in devices)


def build_canvas(renewal_id: str, pair: FmcPair, fmc: str, *, start: StepName = "backup") -> Signature:
    """The canvas of one FMC from `start` on: its control steps in order, then a push to every peer (round 1).
    Verification follows from the database's fan-in, not from a chord (see the module docstring)."""
    fmc_entry = pair.primary if pair.primary.name == fmc else pair.secondary
    steps = CONTROL_STEPS[CONTROL_STEPS.index(start) :]
    peers = [p.name for p in peers_of(pair, fmc_entry)]
    return chain(*(control_step(s, renewal_id, fmc) for s in steps), pushes(renewal_id, pair, fmc, peers, 1))


def advance(ctx: Context, renewal_id: str, pair: FmcPair) -> str:
    """After an FMC finished (or at enqueue): start the next pending FMC, or end the renewal. Returns what it
    did, for the caller's log and result."""
    with ctx.db() as db:
        fmcs = store.fmcs_of(session=db, renewal_id=renewal_id)
        for row in fmcs:
            if row.state == "failed":
                store.finish_renewal(session=db, renewal_id=renewal_id, state="failed", now=ctx.now())
                return f"stopped: {row.fmc} failed"
            if row.state == "running":
                return f"waiting for {row.fmc}"
            if row.state == "pending":
                if not store.begin_fmc(session=db, renewal_id=renewal_id, fmc=row.fmc, now=ctx.now()):
                    return f"{row.fmc} already started"
                store.mark_running(session=db, renewal_id=renewal_id, now=ctx.now())
                build_canvas(renewal_id, pair, row.fmc).apply_async()
                return f"started {row.fmc}"
        state: RenewalState = "succeeded" if all(r.state == "succeeded" for r in fmcs) else "partial"
        store.finish_renewal(session=db, renewal_id=renewal_id, state=state, now=ctx.now())
        return f"finished: {state}"


class Work(enum.Enum):
    NOTHING = "nothing"
    ADVANCE = "advance"
    CONTROL = "control"
    PUSHES = "pushes"
    VERIFY = "verify"


@dataclass(frozen=True)
class Resend:
    """What the reconciler sends again for one renewal."""

    work: Work
    fmc: str | None = None
    start: StepName | None = None
    devices: tuple[str, ...] = ()
    round: int = 0


def _succeeded(steps: Sequence[StepRun], step: str) -> bool:
    return any(s.step == step and s.device is None and s.state == "succeeded" for s in steps)


def next_work(fmcs: Sequence[RenewalFmc], steps: Sequence[StepRun], unsettled: Sequence[str]) -> Resend:
    """Pure: from the recorded state of a stalled renewal, the piece of work to send again. `steps` and
    `unsettled` belong to the first FMC that is running."""
    running = next((f for f in fmcs if f.state == "running"), None)
    if running is None:
        return Resend(Work.ADVANCE)
    for step in CONTROL_STEPS:
        if not _succeeded(steps, step):
            return Resend(Work.CONTROL, running.fmc, start=step)
    if unsettled:
        return Resend(Work.PUSHES, running.fmc, devices=tuple(unsettled), round=running.push_round)
    return Resend(Work.VERIFY, running.fmc, round=running.push_round)


def resend(ctx: Context, renewal_id: str, pair: FmcPair) -> Resend:
    """Send again what a stalled renewal is waiting for."""
    with ctx.db() as db:
        fmcs = store.fmcs_of(session=db, renewal_id=renewal_id)
        running = next((f for f in fmcs if f.state == "running"), None)
        steps = store.steps_of(session=db, renewal_id=renewal_id, fmc=running.fmc) if running else []
        unsettled = (
            store.unsettled(session=db, renewal_id=renewal_id, fmc=running.fmc, round=running.push_round)
            if running and running.push_round
            else []
        )
        store.touch(session=db, renewal_id=renewal_id, now=ctx.now())
    work = next_work(fmcs, steps, unsettled)
    if work.work is Work.ADVANCE:
        advance(ctx, renewal_id, pair)
    elif work.work is Work.CONTROL and work.fmc and work.start:
        build_canvas(renewal_id, pair, work.fmc, start=work.start).apply_async()
    elif work.work is Work.PUSHES and work.fmc:
        pushes(renewal_id, pair, work.fmc, work.devices, work.round).apply_async()
    elif work.work is Work.VERIFY and work.fmc:
        verify_step(renewal_id, work.fmc, work.round).apply_async()
    return work
