"""The Celery side of the flow: the canvas of an FMC, and the I/O that does what `pipeline.flow` decides.

What happens next is decided in `pipeline.flow` (pure, table-tested). This module only reads what the store
recorded, converts it into the flow's inputs (`records`), asks, and does what the decision says: builds
signatures and sends them (`apply_async`), and writes the renewal's and FMCs' states.

The canvas of an FMC is `backup -> validate -> regenerate -> group(push per peer)`. What Celery cannot be
trusted with is kept in the database: the pushes of a round are counted there (the push that settles the last
slot of a round claims the verify, once), the verify starts the next FMC (primary, then secondary) or ends the
renewal, and the reconciler finds renewals whose messages were lost (a Redis restart) and sends the next piece
again from the recorded state. Every task is idempotent, so sending one again is safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import chain, current_app, group
from celery.canvas import Signature
from sqlmodel import Session

from pipeline import flow, notices, report, store
from pipeline.inventory import FmcPair, Ftd
from pipeline.notices import Notice
from pipeline.steps.validate import peers_of
from pipeline.store import RenewalFmc, RenewalState, StepRun
from tasks import record
from tasks.context import Context, settings_of
from tasks.notify import notify, wanted
from tasks.queues import control_queue, push_queue


def queue_prefix() -> str:
    """The queue prefix of the current app's settings (`SFTRENEW_QUEUE_PREFIX`; none for an app without)."""
    settings = settings_of(current_app._get_current_object())
    return settings.celery.queue_prefix if settings is not None else ""


def _task(name: str, args: tuple[object, ...], *, queue: str, shadow: str) -> Signature:
    """An immutable signature (it ignores its parent's result) named `shadow` in Flower and the logs."""

    return current_app.signature(name, args=args, immutable=True, queue=queue, shadow=shadow)


#: How many characters of a renewal's id a task's name shows: enough to tell the renewals of one Flower apart
#: (`sftrenew status` and `history` take the whole id, and print it).
SHORT_ID = 8


def shadow(step: str, renewal_id: str, fmc: str, device: str | None = None) -> str:
    """The name a task shows in Flower and the logs: its step, its renewal (short id) and what it works on,
    e.g. `sftrenew.push[3f2a9c1e fmc-primary->ftd-001]`, so one renewal's tasks can be found (Flower's search
    matches the name) among other renewals' and the reconciler's. A retry must pass it again (Celery does not
    keep it), or the last attempt, the one that fails, shows as a bare task name."""
    what = f"{fmc}->{device}" if device else fmc
    return f"sftrenew.{step}[{renewal_id[:SHORT_ID]} {what}]"


def control_step(step: str, renewal_id: str, fmc: str) -> Signature:
    return _task(
        f"sftrenew.{step}",
        (renewal_id, fmc),
        queue=control_queue(queue_prefix()),
        shadow=shadow(step, renewal_id, fmc),
    )


def push_step(renewal_id: str, fmc: str, device: str, queue: str, round_: int, who: str | None) -> Signature:
    return _task(
        "sftrenew.push",
        (renewal_id, fmc, device, round_, who),
        queue=queue,
        shadow=shadow("push", renewal_id, fmc, device),
    )


def verify_step(renewal_id: str, fmc: str, round_: int) -> Signature:
    return _task(
        "sftrenew.verify",
        (renewal_id, fmc, round_),
        queue=control_queue(queue_prefix()),
        shadow=shadow("verify", renewal_id, fmc),
    )


def site_of(pair: FmcPair, device: str) -> str | None:
    found = next((d for d in pair.ftds if d.name == device), None)
    return found.site if isinstance(found, Ftd) else None


def pushes(
    renewal_id: str, pair: FmcPair, fmc: str, devices: Sequence[str], round_: int, who: str | None = None
) -> Signature:
    prefix = queue_prefix()
    return group(
        push_step(renewal_id, fmc, d, push_queue(site_of(pair, d), prefix), round_, who) for d in devices
    )


def build_canvas(
    renewal_id: str, pair: FmcPair, fmc: str, *, start: flow.ControlStep = "backup"
) -> Signature:
    """The canvas of one FMC from `start` on: its control steps in order, then a push to every peer (round 1).
    Verification follows from the database's fan-in, not from a chord (see the module docstring)."""
    fmc_entry = pair.primary if pair.primary.name == fmc else pair.secondary
    steps = flow.CONTROL_STEPS[flow.CONTROL_STEPS.index(start) :]
    peers = [p.name for p in peers_of(pair, fmc_entry)]
    return chain(*(control_step(s, renewal_id, fmc) for s in steps), pushes(renewal_id, pair, fmc, peers, 1))


# ------------------------------------------------------------------ the record, as the flow's inputs


_FMC_STATES: dict[str, flow.FmcState] = {state: state for state in flow.FMC_STATES}


def _fmc_state(row: RenewalFmc) -> flow.FmcState:
    if row.state not in _FMC_STATES:
        raise ValueError(f"renewal {row.renewal_id}: FMC {row.fmc} has an unknown state {row.state!r}")
    return _FMC_STATES[row.state]


def _done(steps: Sequence[StepRun]) -> frozenset[flow.ControlStep]:
    """The control steps recorded as succeeded on the FMC itself."""
    done = {s.step for s in steps if s.device is None and s.state == "succeeded"}
    return frozenset(step for step in flow.CONTROL_STEPS if step in done)


def records(db: Session, renewal_id: str, *, progress: bool = False) -> tuple[flow.FmcRecord, ...]:
    """The renewal's FMCs as the flow reads them, primary first. With `progress`, the running FMC also
    carries its succeeded control steps, the unsettled devices of its newest round and whether the renewal
    waits for approval or is paused (what `resume` needs; `after_fmc` needs only the states)."""
    found = []
    for row in store.fmcs_of(session=db, renewal_id=renewal_id):
        state = _fmc_state(row)
        if progress and state == "running":
            steps = store.steps_of(session=db, renewal_id=renewal_id, fmc=row.fmc)
            unsettled = (
                store.unsettled(session=db, renewal_id=renewal_id, fmc=row.fmc, round=row.push_round)
                if row.push_round
                else []
            )
            held = store.awaiting_approval(session=db, renewal_id=renewal_id)
            paused = store.paused(session=db, renewal_id=renewal_id)
            found.append(
                flow.FmcRecord(row.fmc, state, row.push_round, _done(steps), tuple(unsettled), held, paused)
            )
        else:
            found.append(flow.FmcRecord(row.fmc, state, row.push_round))
    return tuple(found)


# ------------------------------------------------------------------ carrying out the decisions


def advance(ctx: Context, renewal_id: str, pair: FmcPair) -> str:
    """After an FMC finished (or at enqueue): do what `flow.after_fmc` says (start the next pending FMC, wait,
    or end the renewal). Returns what it did, for the caller's log and result."""
    ended: Notice | None = None
    with ctx.db() as db:
        decided = flow.after_fmc(records(db, renewal_id))
        match decided:
            case flow.Stop() | flow.Finish():
                ended = _finish(db, ctx, renewal_id, pair.name, decided.outcome)
            case flow.Start(fmc=fmc):
                # Two verifies finishing the previous FMC, or a verify and the reconciler, may both decide to
                # start it: the database lets one of them.
                if not store.begin_fmc(session=db, renewal_id=renewal_id, fmc=fmc, now=ctx.now()):
                    return f"{fmc} already started"
                store.mark_running(session=db, renewal_id=renewal_id, now=ctx.now())
                build_canvas(renewal_id, pair, fmc).apply_async()
    if ended is not None:  # once committed: told of an end that stands
        notify(ctx.settings, ended)
    return str(decided)


def _finish(db: Session, ctx: Context, renewal_id: str, pair: str, outcome: RenewalState) -> Notice | None:
    """End the renewal; the notice of its end when this call ended it (not when a twin call, a verify and
    the reconciler, say, had already)."""
    row = store.renewal(session=db, renewal_id=renewal_id)
    was_active = row is not None and flow.takes_step(row.state)
    store.finish_renewal(session=db, renewal_id=renewal_id, state=outcome, now=ctx.now())
    if not was_active or not wanted(ctx.settings):
        return None
    fmcs = store.fmcs_of(session=db, renewal_id=renewal_id)
    missing = report.not_verified(fmcs, store.steps_of(session=db, renewal_id=renewal_id))
    return notices.renewal_ended(renewal_id, pair, outcome, missing)


def send(ctx: Context, renewal_id: str, pair: FmcPair, decided: flow.Resume | None) -> None:
    """Send what the flow decided to send (again); None: nothing to send."""
    match decided:
        case flow.Advance():
            advance(ctx, renewal_id, pair)
        case flow.SendControl(fmc=fmc, start=start):
            build_canvas(renewal_id, pair, fmc, start=start).apply_async()
        case flow.SendPushes(fmc=fmc, devices=devices, round=round_):
            pushes(renewal_id, pair, fmc, devices, round_).apply_async()
        case flow.SendVerify(fmc=fmc, round=round_):
            verify_step(renewal_id, fmc, round_).apply_async()
        case flow.AwaitApproval() | flow.AwaitResume():
            pass  # `sftrenew approve` sends the regeneration, `sftrenew resume` the pushes or the verify


def resend(ctx: Context, renewal_id: str, pair: FmcPair) -> flow.Resume:
    """Send again what a stalled renewal is waiting for (`flow.resume` decides), close the attempts it takes
    over that are still `started` as interrupted (`flow.superseded`: their worker died), and mark the renewal
    touched so that the next reconciler run gives the sent piece time to move."""
    with ctx.db() as db:
        recorded = records(db, renewal_id, progress=True)
        decided = flow.resume(recorded)
        taken = flow.superseded(decided)
        lost: list[str | None] = []
        if taken is not None:
            lost = store.interrupt_started(
                session=db,
                renewal_id=renewal_id,
                fmc=taken.fmc,
                steps=taken.steps,
                devices=taken.devices,
                now=ctx.now(),
            )
        store.touch(session=db, renewal_id=renewal_id, now=ctx.now())
    record.mark_lost(lost)
    send(ctx, renewal_id, pair, decided)
    return decided
