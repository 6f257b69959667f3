"""One push attempt on Celery: its database work, in at most three transactions.

1. `begin`, one transaction: whether the renewal is paused (then nothing more is read or recorded), what
   this delivery of the message does (`pipeline.flow.push_delivery`: an attempt, the device's next round
   opened first, or a failure with its reason and nothing done), the renewal (its pair; its request time,
   which names the copies kept on the device), validate's record, the peer's material (keys unsealed), and
   what this renewal recorded of the device's write and restart; then
   the attempt is recorded as started, with the route `pipeline.flow.begin_push` gave it. A device that
   refused validate's login is not logged in to in round 1 (`pipeline.flow.login_refused`): the attempt
   fails at once, recorded as refused with that refusal's kind, until `sftrenew retry`.
2. The intent to write (`artifacts.write_started`), only when the device turns out to need a write. It must
   be committed before the first file changes, so that a crash between the write and the record cannot hide
   a write; and only the device's files say whether a write is needed, so it cannot share the first.
3. `succeeded` or `failed`, one transaction: the restart (when this attempt restarted sftunnel), what the
   device held when a successful push ended (`store.record_held`, for verify), the attempt's end, and its
   slot settled (unless the flow retries it); the settle that leaves no slot of the round open claims the
   round's verify, and `pipeline.flow.after_settle` says to send it.

The restart is recorded in the third transaction rather than in its own right after `pmtool`: a worker that
dies between the two leaves "written, no restart" on record, and the next attempt restarts sftunnel once
more. That is harmless (the files are already new), and nothing is hidden; a fourth transaction would only
narrow that window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from pipeline import flow, store
from pipeline.devices.factory import SessionFactory
from pipeline.devices.session import Route
from pipeline.errors import (
    ConfigError,
    LateDeliveryError,
    NoRouteError,
    PushRefusedError,
    SftrenewError,
    can_retry,
)
from pipeline.inventory import FmcPair
from pipeline.material import FilesBefore, PeerMaterial
from pipeline.records import ValidateRecord
from pipeline.steps.push import HeldFiles, PushAction, PushOutcome, RestartFacts, push_once
from pipeline.store import SlotOutcome, StepState
from tasks import artifacts, record, retrying
from tasks.context import Context


@dataclass(frozen=True)
class Slot:
    """What a push task's arguments name: the device's slot in a push round of one FMC of a renewal."""

    renewal_id: str
    fmc: str
    device: str
    round: int


#: The peer's material and the FMC's UUID, or the error that says why there is none (raised in the attempt,
#: so that it is recorded as the attempt's failure and the device is offered to `sftrenew retry`).
Inputs = tuple[PeerMaterial, str] | SftrenewError | LookupError
#: Validate's record as the attempt's first transaction read it, or why it could not.
Validated = ValidateRecord | SftrenewError | LookupError


@dataclass
class PushAttempt:
    """A push attempt, loaded and recorded as started."""

    ctx: Context
    slot: Slot
    pair: FmcPair
    decided: flow.Attempt | flow.GiveUp
    number: int
    routes: tuple[Route, ...]
    factory: SessionFactory
    redact: Callable[[str], str]
    started: record.StepRecord
    stamp: datetime
    inputs: Inputs
    recorded: RestartFacts
    restarted: bool = False
    #: The flow said not to log in (the device refused validate's login): the attempt fails with this.
    refused: PushRefusedError | None = None

    @property
    def route(self) -> Route | None:
        return self.decided.route if isinstance(self.decided, flow.Attempt) else None

    def push(self) -> PushOutcome:
        """The device I/O: one attempt by the flow's route, from the material and facts loaded."""
        if self.refused is not None:
            raise self.refused
        if not isinstance(self.inputs, tuple):
            raise self.inputs
        if not isinstance(self.decided, flow.Attempt):
            raise NoRouteError(self.slot.device, "none", self.decided.reason)
        material, fmc_uuid = self.inputs
        return push_once(
            self.factory,
            self.slot.device,
            self.decided.route,
            fmc_uuid=fmc_uuid,
            material=material,
            backup_stamp_utc=self.stamp,
            recorded=self.recorded,
            on_write_started=self._write_started,
            on_restarted=self._restarted,
        )

    def _write_started(self, before: FilesBefore) -> None:
        s = self.slot
        artifacts.write_started(self.ctx, s.renewal_id, s.fmc, s.device, before)

    def _restarted(self) -> None:
        self.restarted = True  # recorded in the attempt's last transaction (see the module docstring)

    def succeeded(self, outcome: PushOutcome) -> flow.SendVerify | None:
        """Record the end of a push that succeeded (or found nothing to do) and settle its slot."""
        state: SlotOutcome = "skipped" if outcome.action is PushAction.SKIP else "succeeded"
        return self._end(state, settle=state, message=outcome.message, held=outcome.held)

    def failed(self, exc: Exception) -> tuple[flow.Attempt | None, flow.SendVerify | None]:
        """Record a failed attempt; the flow decides whether another follows (returned, for Celery's retry)
        or the push gives up (its slot settles as failed). An error that is not ours (a bug) is recorded
        as failed and leaves the slot open: the reconciler sends the push again."""
        failure = record.Failure.of(exc, self.redact)
        if not isinstance(exc, SftrenewError):
            return None, self._end("failed", settle=None, failure=failure)
        decided = flow.next_attempt(self.routes, self.number, can_retry(exc), self.ctx.retry_policy)
        state = flow.attempt_failed_state(decided, refused=isinstance(exc, PushRefusedError))
        if isinstance(decided, flow.Attempt):
            return decided, self._end(state, settle=None, failure=failure)
        return None, self._end(state, settle="failed", failure=failure)

    def _end(
        self,
        state: StepState,
        *,
        settle: SlotOutcome | None,
        failure: record.Failure | None = None,
        message: str | None = None,
        held: HeldFiles | None = None,
    ) -> flow.SendVerify | None:
        s, now = self.slot, self.ctx.now()

        def record_end(db: Session) -> bool:
            if self.restarted:
                store.record_restarted(
                    session=db, renewal_id=s.renewal_id, fmc=s.fmc, device=s.device, now=now
                )
            if held is not None:
                store.record_held(
                    session=db,
                    renewal_id=s.renewal_id,
                    fmc=s.fmc,
                    device=s.device,
                    ca_sha256=held.ca_sha256,
                    cert_sha256=held.cert_sha256,
                    key_matches_cert=held.key_matches_cert,
                    route=str(self.route),
                    now=now,
                )
            record.finished(db, self.started, state, now=now, failure=failure, message=message)
            return settle is not None and store.settle_push(
                session=db,
                renewal_id=s.renewal_id,
                fmc=s.fmc,
                round=s.round,
                device=s.device,
                outcome=settle,
                now=now,
            )

        with self.ctx.db() as db:
            last = store.atomically(db, lambda: record_end(db))
        return flow.after_settle(last, s.fmc, s.round)


def _inputs(db: Session, ctx: Context, slot: Slot, validated: Validated) -> Inputs:
    if not isinstance(validated, ValidateRecord):
        return validated
    key = ctx.settings.artifact_key
    try:
        return artifacts.material_for(db, key, validated, slot.renewal_id, slot.fmc, slot.device)
    except (SftrenewError, LookupError) as exc:
        return exc


def _refused(slot: Slot, validated: Validated) -> PushRefusedError | None:
    """The error the attempt fails with, without logging in, when the flow says the device must not be
    logged in to (it refused validate's login, and this is round 1); None: log in (or there is no readable
    record of validate: the attempt's inputs say why)."""
    if not isinstance(validated, ValidateRecord):
        return None
    refusal = artifacts.validate_refusal(validated, slot.device)
    if refusal is None or flow.login_refused("push", slot.round, at_validate=refusal.kind) is None:
        return None
    cause = (
        f"refused at validate, so not logged in to again: {refusal.detail}, then `sftrenew retry` "
        "(this renewal logs in to it again only then)"
    )
    return PushRefusedError(slot.device, refusal.route, refusal.kind, cause, False)


def _validated(db: Session, ctx: Context, slot: Slot) -> Validated:
    """Validate's record, read once for the attempt's material and its refusal; the error when unreadable."""
    try:
        return artifacts.validated_in(db, ctx.settings.artifact_key, slot.renewal_id, slot.fmc)
    except (SftrenewError, LookupError) as exc:
        return exc


class Paused(Exception):  # noqa: N818 - not an error: the push waits for `sftrenew resume`
    """The renewal is paused (`sftrenew pause`): the push did not start, and nothing was recorded."""


def begin(ctx: Context, slot: Slot, number: int, *, task_id: str | None, who: str | None) -> PushAttempt:
    """The attempt `number` (1-based) of the slot's push, loaded and recorded as started in one transaction;
    `Paused`, with nothing recorded, while the renewal is paused.

    Whatever delivered the message (the canvas, a Celery retry, a redelivery, a duplicate, Flower's re-apply),
    `flow.push_delivery` decides: an attempt in its round (for a slot that settled as pushed or skipped, a
    check: the push reads the device and skips only if it holds the new files); for a slot that settled as
    failed, the device's next round is opened (`tasks.retrying`, as `sftrenew retry` does) and the attempt is
    that round's first; or `LateDeliveryError`, with nothing done, when the renewal cannot take it."""
    with ctx.db() as db:
        events = store.events_of(session=db, renewal_id=slot.renewal_id)  # read once, for both questions
        if store.paused_by(events):
            raise Paused(slot.renewal_id)
        renewal, pair = ctx.renewal(db, slot.renewal_id)
        # Read now: a twin's constraint violation below rolls the session back, which expires loaded rows,
        # and the session is closed before the attempt is built.
        stamp = renewal.requested_at_utc
        delivered = flow.push_delivery(
            renewal_ended=not flow.takes_step(renewal.state),
            abandoned=any(event.action == "abandon" for event in events),
            settled=artifacts.slot_outcome(db, slot.renewal_id, slot.fmc, slot.round, slot.device),
        )
        if isinstance(delivered, flow.NotDelivered):
            raise LateDeliveryError(slot.renewal_id, slot.fmc, slot.device, delivered.reason)
        if isinstance(delivered, flow.Reopen):
            slot, number = _reopen(db, ctx, renewal, slot, task_id=task_id), 1
        factory, resolver = ctx.devices(pair.name)
        routes = tuple(factory.routes_for(slot.device))
        decided = flow.begin_push(routes, number, ctx.retry_policy)
        validated = _validated(db, ctx, slot)
        inputs = _inputs(db, ctx, slot, validated)
        refused = _refused(slot, validated)
        recorded = artifacts.restart_facts(db, slot.renewal_id, slot.fmc, slot.device)
        started = store.atomically(
            db,
            lambda: record.started(
                db,
                renewal_id=slot.renewal_id,
                fmc=slot.fmc,
                step="push",
                device=slot.device,
                task_id=task_id,
                route=str(decided.route) if isinstance(decided, flow.Attempt) else None,
                who=who,
                now=ctx.now(),
            ),
        )
    return PushAttempt(
        ctx,
        slot,
        pair,
        decided,
        number,
        routes,
        factory,
        resolver.redact,
        started,
        stamp,
        inputs,
        recorded,
        refused=refused,
    )


def _reopen(db: Session, ctx: Context, renewal: store.Renewal, slot: Slot, *, task_id: str | None) -> Slot:
    """Open the device's next push round for the slot's FMC (`tasks.retrying`); the slot in it. A delivery
    that opened a round holding the device first leaves this one a duplicate attempt in that round."""
    plans = flow.retry_devices(retrying.push_history(db, slot.renewal_id), [slot.device])
    plan = next((p for p in plans if p.fmc == slot.fmc), None) if isinstance(plans, tuple) else None
    if plan is None:  # pragma: no cover - a failed slot is a failed last attempt, which retry_devices offers
        raise LateDeliveryError(slot.renewal_id, slot.fmc, slot.device, "the record offers no push to retry")
    try:
        opened = retrying.open_rounds(
            db, renewal, [plan], who=f"a push delivered again (task {task_id})", now=ctx.now()
        )
    except ConfigError as exc:
        raise LateDeliveryError(slot.renewal_id, slot.fmc, slot.device, str(exc)) from None
    number = opened.round_of(slot.fmc, slot.device)
    if number is None:  # pragma: no cover - open_rounds leaves every device it was given in some open round
        raise LateDeliveryError(slot.renewal_id, slot.fmc, slot.device, "no push round holds the device")
    return Slot(slot.renewal_id, slot.fmc, slot.device, number)
