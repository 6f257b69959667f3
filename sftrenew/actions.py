"""What an operator does to a renewal, one function per act: retry, approve, pause, resume, abandon.

The command line (`sftrenew retry|approve|pause|resume|abandon`) and the renewal page (`sftrenew web`) call
these same functions: each takes a `Desk` (the settings, and the database checked when first used), the
renewal, its parameters and who acts; it checks what it uses in the order the command always did, records
the act with who, sends what the flow decides, and returns a typed outcome. A refusal the operator can act
on is an `ActionRefusedError` (the command prints it and exits 1; the page shows it); a wrong input is a
`ConfigError` as before (exit 2). Neither prints: the callers render. Observers (`shown`, `sent`) let the
command print while the act goes on, as it always did (nornir's processors).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline import flow, notices, report, store
from pipeline.devices.factory import SessionFactory
from pipeline.errors import ConfigError
from pipeline.inventory import Inventory
from pipeline.records import plan_changes
from pipeline.secrets import SecretResolver
from pipeline.store.checks import ServiceUnreachableError
from pipeline.store.crypto import artifact_key
from sftrenew.checks import celery_app, check_devices, engine_of, inventory_of
from sftrenew.planning import plan_pair
from sftrenew.services import broker_failure, check_broker
from tasks import artifacts, retrying
from tasks.context import Context
from tasks.flow import pushes, records, resend
from tasks.notify import notify


class Desk(Context):
    """Where an act runs: a task `Context` whose database is checked (reachable, sftrenew's tables, newest
    schema: `engine_of`) when an act first needs it, and whose Celery app is made the default once.

    A command makes one for its one act; the renewal page makes one at start-up and keeps it."""

    _celery_lock = threading.Lock()
    _celery_ready = False

    @cached_property
    def engine(self) -> Engine:
        return engine_of(self.settings)

    def celery(self) -> None:
        """Make the settings' Celery app the default (what sends the tasks), once per desk."""
        with self._celery_lock:
            if not self._celery_ready:
                celery_app(self.settings)
                self._celery_ready = True


class ActionRefusedError(Exception):
    """The act was refused and nothing was changed; the message names why and the next move."""


class PlanChangedError(ActionRefusedError):
    """`approve`: the plan made now differs from the one recorded at enqueue."""

    def __init__(self, renewal_id: str, changes: Sequence[str]) -> None:
        self.renewal_id = renewal_id
        self.changes = tuple(changes)
        super().__init__(
            f"the plan changed since enqueue: {'; '.join(self.changes)}; nothing was approved; fix the "
            f"device, or abandon renewal {renewal_id} and enqueue again"
        )


class RegeneratedAlreadyError(ActionRefusedError):
    """`abandon` without force after an FMC's CA was (or was about to be) regenerated."""

    def __init__(self, renewal_id: str, fmcs: Sequence[str]) -> None:
        self.renewal_id = renewal_id
        self.fmcs = tuple(fmcs)
        super().__init__(
            f"renewal {renewal_id} already regenerated the CA of {', '.join(self.fmcs)}: abandoning it "
            "leaves every device it did not reach on the old CA, off the tunnel; `sftrenew retry` may "
            "finish the job; add --force to abandon anyway"
        )


@dataclass(frozen=True)
class RetryOutcome:
    renewal_id: str
    who: str
    #: One round per FMC that pushes again; empty: no failed push (of the devices named), or each is in a
    #: round a push delivered again had just opened (its delivery pushes it).
    rounds: tuple[flow.RetryRound, ...]


@dataclass(frozen=True)
class ApproveOutcome:
    renewal_id: str
    who: str
    #: Per FMC: its peers and how many are stranded (accepted), as recorded with the approval.
    summary: str
    #: What was sent on approval (the flow's decision, e.g. `SendControl`).
    sent: str


@dataclass(frozen=True)
class PauseOutcome:
    renewal_id: str
    #: False: it was paused already, nothing recorded.
    paused: bool


@dataclass(frozen=True)
class ResumeOutcome:
    renewal_id: str
    sent: str


@dataclass(frozen=True)
class AbandonOutcome:
    renewal_id: str
    pair: str
    #: `FMC -> device` for each device a regenerated FMC did not verify on its new CA.
    not_on_new_ca: tuple[str, ...]


def _ready_to_send(desk: Desk, *, sealed_keys: bool) -> Inventory:
    """What an act that sends tasks checks first, in this order (the commands' exit codes follow it): the
    inventory, the artifact key (`sealed_keys`: the act pushes them), the database, the broker."""
    inventory = inventory_of(desk.settings)
    if sealed_keys:
        artifact_key(desk.settings.artifact_key)
    _ = desk.engine
    desk.celery()
    check_broker(desk.settings)
    return inventory


def _renewal(db: Session, renewal_id: str) -> store.Renewal:
    row = store.renewal(session=db, renewal_id=renewal_id)
    if row is None:
        raise ConfigError(f"no renewal {renewal_id}; `sftrenew history` lists them")
    return row


def retry(
    desk: Desk,
    renewal_id: str,
    *,
    devices: Sequence[str] = (),
    by: str,
    sent: Callable[[flow.RetryRound], None] | None = None,
) -> RetryOutcome:
    """Push again to the devices whose last push failed or was refused (only `devices` when named), then
    verify; no regeneration. Every input is checked before the renewal is reopened or a round opened."""
    settings = desk.settings
    inventory = _ready_to_send(desk, sealed_keys=True)
    with store.open_session(desk.engine) as db:
        row = _renewal(db, renewal_id)
        renewal_id = row.id
        pair = inventory.pair(row.pair)
        check_devices(settings, inventory, [pair])
        _check_key_opens(db, renewal_id, desk)
        plans = flow.retry_devices(retrying.push_history(db, renewal_id), devices)
        if isinstance(plans, flow.UnknownDevices):
            raise ConfigError(
                f"renewal {renewal_id}: {plans}; `sftrenew status {renewal_id}` lists its devices"
            )
        if not plans:
            return RetryOutcome(renewal_id, by, ())
        # The rounds as opened: a round a redelivered push opened first is planned again (the next round).
        opened = retrying.open_rounds(db, row, plans, who=by, now=desk.now()).rounds
    for plan in opened:
        try:
            pushes(renewal_id, pair, plan.fmc, plan.devices, plan.round, by).apply_async()
        except Exception as exc:
            problem = broker_failure(settings, exc)
            if problem is None:
                raise
            raise ServiceUnreachableError(
                f"{problem}; the pushes of renewal {renewal_id} are recorded and the reconciler sends them "
                "again once the broker answers"
            ) from exc
        if sent is not None:
            sent(plan)
    return RetryOutcome(renewal_id, by, opened)


def _check_key_opens(db: Session, renewal_id: str, desk: Desk) -> None:
    """The configured artifact key must open the renewal's sealed keys (a retry pushes them)."""
    sealed = next((a for a in store.artifacts_of(session=db, renewal_id=renewal_id) if a.secret), None)
    if sealed is not None:
        store.artifact_data(sealed, key=desk.settings.artifact_key)


def approve(
    desk: Desk, renewal_id: str, *, by: str, shown: Callable[[list[str]], None] | None = None
) -> ApproveOutcome:
    """Let a held renewal regenerate: plan again (read-only; `shown` gets the plan's lines), refuse with
    `PlanChangedError` when the plan differs from the one recorded at enqueue, else record who approved which
    plan and send the regeneration."""
    settings = desk.settings
    inventory = _ready_to_send(desk, sealed_keys=True)
    with store.open_session(desk.engine) as db:
        row = _renewal(db, renewal_id)
        if not flow.takes_step(row.state):
            raise ConfigError(f"renewal {row.id} ended ({row.state}): there is nothing to approve")
        if not store.awaiting_approval(session=db, renewal_id=row.id):
            raise ConfigError(f"renewal {row.id} is not held for approval (or was approved already)")
        if not isinstance(flow.resume(records(db, row.id, progress=True)), flow.AwaitApproval):
            raise ConfigError(
                f"renewal {row.id} is still running its backup and validate: approve once `sftrenew status "
                f"{row.id}` says awaiting approval"
            )
        renewal_id, pair_name = row.id, row.pair
    pair = inventory.pair(pair_name)
    check_devices(settings, inventory, [pair])
    factory = SessionFactory(inventory, pair.name, SecretResolver(inventory, os.environ), settings)
    planned = plan_pair(factory, pair, settings)
    if shown is not None:
        shown(planned.lines())
    changes: list[str] = []
    for fmc_plan in planned.plan.fmcs:
        seen = artifacts.plan_record(desk, renewal_id, fmc_plan.fmc)
        changes += plan_changes(seen, fmc_plan) if seen is not None else [f"{fmc_plan.fmc}: no plan recorded"]
    if changes:
        raise PlanChangedError(renewal_id, changes)
    summary = "; ".join(
        f"{f.fmc}: {len(f.peers)} peers, {len(f.stranded)} stranded (accepted)" for f in planned.plan.fmcs
    )
    with store.open_session(desk.engine) as db:
        store.add_event(
            session=db, renewal_id=renewal_id, action="approve", now=desk.now(), who=by, detail=summary
        )
    decided = resend(desk, renewal_id, pair)
    return ApproveOutcome(renewal_id, by, summary, decided.kind)


def _active(db: Session, renewal_id: str) -> store.Renewal:
    row = _renewal(db, renewal_id)
    if not flow.takes_step(row.state):
        raise ConfigError(f"renewal {row.id} ended already ({row.state})")
    return row


def pause(desk: Desk, renewal_id: str, *, reason: str | None, by: str) -> PauseOutcome:
    """No new push starts (running ones finish and are recorded), verify waits; recorded with who and why."""
    with store.open_session(desk.engine) as db:
        row = _active(db, renewal_id)
        if store.paused(session=db, renewal_id=row.id):
            return PauseOutcome(row.id, paused=False)
        store.add_event(session=db, renewal_id=row.id, action="pause", now=desk.now(), who=by, detail=reason)
    return PauseOutcome(row.id, paused=True)


def resume(desk: Desk, renewal_id: str, *, by: str) -> ResumeOutcome:
    """Let a paused renewal go on: record who, and send what waits."""
    inventory = _ready_to_send(desk, sealed_keys=False)
    with store.open_session(desk.engine) as db:
        row = _active(db, renewal_id)
        if not store.paused(session=db, renewal_id=row.id):
            raise ConfigError(f"renewal {row.id} is not paused")
        pair = inventory.pair(row.pair)
        store.add_event(session=db, renewal_id=row.id, action="resume", now=desk.now(), who=by)
    decided = resend(desk, row.id, pair)
    return ResumeOutcome(row.id, decided.kind)


def check_reason(reason: str | None) -> str:
    """An abandon's reason, stripped; ConfigError when there is none (it is recorded)."""
    if reason is None or not reason.strip():
        raise ConfigError("--reason TEXT: say why the renewal is abandoned (it is recorded)")
    return reason.strip()


def abandon(desk: Desk, renewal_id: str, *, reason: str, force: bool, by: str) -> AbandonOutcome:
    """End a renewal and free its pair. After a regeneration (or its recorded intent) only with `force`
    (`RegeneratedAlreadyError` otherwise, nothing changed); the outcome lists the devices left behind, and
    `SFTRENEW_NOTIFY` is told."""
    why = check_reason(reason)
    now = desk.now()
    with store.open_session(desk.engine) as db:
        row = _active(db, renewal_id)
        fmcs = store.fmcs_of(session=db, renewal_id=row.id)
        changed = report.regenerated(fmcs)
        if changed and not force:
            raise RegeneratedAlreadyError(row.id, changed)
        for fmc in fmcs:
            if fmc.state in ("pending", "running"):
                store.set_fmc_state(session=db, renewal_id=row.id, fmc=fmc.fmc, state="failed", now=now)
        store.add_event(
            session=db,
            renewal_id=row.id,
            action="abandon",
            now=now,
            who=by,
            detail=why + (" (forced, after a regeneration)" if changed else ""),
        )
        store.finish_renewal(session=db, renewal_id=row.id, state="failed", now=now)
        missing = report.not_verified(fmcs, store.steps_of(session=db, renewal_id=row.id))
    notify(desk.settings, notices.renewal_abandoned(row.id, row.pair, by, why, missing))
    return AbandonOutcome(row.id, row.pair, tuple(f"{fmc} -> {device}" for fmc, device in missing))
