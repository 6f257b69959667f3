"""The operator's hand on a running renewal: approve a held one, pause and resume one, abandon one.

A renewal held at enqueue (`--hold`, or `SFTRENEW_REQUIRE_APPROVAL=true`) runs its backup and validate, then
waits before the first regeneration, the point of no return. `approve` plans again (read-only) and refuses
when the plan changed since enqueue (a device newly stranded, a route changed), showing the difference;
otherwise it records who approved which plan and sends the regeneration. `pause` lets the pushes running
finish and starts no new one (verify waits); `resume` sends what waits. `abandon` ends a renewal and frees
its pair: before any regeneration, cleanly; after one, only with `--force`, and it lists every device that is
not verified on the new CA.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from sqlmodel import Session

from pipeline import flow, store
from pipeline.devices.factory import SessionFactory
from pipeline.errors import ConfigError
from pipeline.records import plan_changes
from pipeline.secrets import SecretResolver
from pipeline.settings import Settings
from pipeline.store.crypto import artifact_key
from sftrenew.planning import plan_pair
from sftrenew.renewals import EXIT_REFUSED, celery_app, check_devices, engine_of, inventory_of
from sftrenew.services import check_broker
from tasks import artifacts
from tasks.context import Context
from tasks.flow import records, resend

Sub = Any


def add_commands(sub: Sub) -> None:
    approve = sub.add_parser("approve", help="let a held renewal regenerate, after planning again")
    approve.add_argument("renewal", help="renewal id")
    approve.add_argument("--by", help="who approves (default: the login name)")
    approve.set_defaults(run=_approve)

    pause = sub.add_parser("pause", help="no new device push starts (running ones finish); verify waits")
    pause.add_argument("renewal", help="renewal id")
    pause.add_argument("--reason", help="why (recorded)")
    pause.add_argument("--by", help="who pauses (default: the login name)")
    pause.set_defaults(run=_pause)

    resume = sub.add_parser("resume", help="let a paused renewal go on")
    resume.add_argument("renewal", help="renewal id")
    resume.add_argument("--by", help="who resumes (default: the login name)")
    resume.set_defaults(run=_resume)

    abandon = sub.add_parser("abandon", help="end a renewal and free its pair")
    abandon.add_argument("renewal", help="renewal id")
    abandon.add_argument("--reason", required=True, help="why (recorded)")
    abandon.add_argument("--force", action="store_true", help="also after a CA was regenerated")
    abandon.add_argument("--by", help="who abandons (default: the login name)")
    abandon.set_defaults(run=_abandon)


def _approve(args: argparse.Namespace, settings: Settings) -> int:
    inventory = inventory_of(settings)
    artifact_key(settings.artifact_key)
    engine = engine_of(settings)
    celery_app(settings)
    check_broker(settings)
    ctx = Context(settings)
    with store.open_session(engine) as db:
        row = store.renewal(session=db, renewal_id=args.renewal)
        if row is None:
            raise ConfigError(f"no renewal {args.renewal}; `sftrenew history` lists them")
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
    print("\n".join(planned.lines()))
    changes: list[str] = []
    for fmc_plan in planned.plan.fmcs:
        seen = artifacts.plan_record(ctx, renewal_id, fmc_plan.fmc)
        changes += plan_changes(seen, fmc_plan) if seen is not None else [f"{fmc_plan.fmc}: no plan recorded"]
    if changes:
        for line in changes:
            print(f"sftrenew: refused: the plan changed since enqueue: {line}", file=sys.stderr)
        print(
            f"sftrenew: nothing was approved; fix the device, or abandon renewal {renewal_id} "
            "(`sftrenew abandon`) and enqueue again",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    who = args.by or getpass.getuser()
    summary = "; ".join(
        f"{f.fmc}: {len(f.peers)} peers, {len(f.stranded)} stranded (accepted)" for f in planned.plan.fmcs
    )
    with store.open_session(engine) as db:
        store.add_event(
            session=db, renewal_id=renewal_id, action="approve", now=ctx.now(), who=who, detail=summary
        )
    sent = resend(ctx, renewal_id, pair)
    print(f"approved by {who}: {summary}; sent {sent.kind}")
    return 0


def _active(db: Session, renewal_id: str) -> store.Renewal:
    row = store.renewal(session=db, renewal_id=renewal_id)
    if row is None:
        raise ConfigError(f"no renewal {renewal_id}; `sftrenew history` lists them")
    if not flow.takes_step(row.state):
        raise ConfigError(f"renewal {row.id} ended already ({row.state})")
    return row


def _pause(args: argparse.Namespace, settings: Settings) -> int:
    engine = engine_of(settings)
    with store.open_session(engine) as db:
        row = _active(db, args.renewal)
        if store.paused(session=db, renewal_id=row.id):
            print(f"renewal {row.id} is paused already")
            return 0
        store.add_event(
            session=db,
            renewal_id=row.id,
            action="pause",
            now=Context.now(),
            who=args.by or getpass.getuser(),
            detail=args.reason,
        )
    print(
        f"renewal {row.id} paused: pushes running now finish and are recorded, no new one starts, verify "
        f"waits; `sftrenew resume {row.id}` goes on"
    )
    return 0


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    inventory = inventory_of(settings)
    engine = engine_of(settings)
    celery_app(settings)
    check_broker(settings)
    ctx = Context(settings)
    with store.open_session(engine) as db:
        row = _active(db, args.renewal)
        if not store.paused(session=db, renewal_id=row.id):
            raise ConfigError(f"renewal {row.id} is not paused")
        pair = inventory.pair(row.pair)
        store.add_event(
            session=db, renewal_id=row.id, action="resume", now=ctx.now(), who=args.by or getpass.getuser()
        )
    sent = resend(ctx, row.id, pair)
    print(f"renewal {row.id} resumed: sent {sent.kind}")
    return 0


def _abandon(args: argparse.Namespace, settings: Settings) -> int:
    if not args.reason.strip():
        raise ConfigError("--reason TEXT: say why the renewal is abandoned (it is recorded)")
    engine = engine_of(settings)
    now = Context.now()
    with store.open_session(engine) as db:
        row = _active(db, args.renewal)
        fmcs = store.fmcs_of(session=db, renewal_id=row.id)
        changed = [f.fmc for f in fmcs if f.regen_intent_at_utc is not None or f.ca_after_sha256 is not None]
        if changed and not args.force:
            print(
                f"sftrenew: refused: renewal {row.id} already regenerated the CA of {', '.join(changed)}: "
                "abandoning it leaves every device it did not reach on the old CA, off the tunnel; "
                "`sftrenew retry` may finish the job; add --force to abandon anyway",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        for fmc in fmcs:
            if fmc.state in ("pending", "running"):
                store.set_fmc_state(session=db, renewal_id=row.id, fmc=fmc.fmc, state="failed", now=now)
        store.add_event(
            session=db,
            renewal_id=row.id,
            action="abandon",
            now=now,
            who=args.by or getpass.getuser(),
            detail=args.reason.strip() + (" (forced, after a regeneration)" if changed else ""),
        )
        store.finish_renewal(session=db, renewal_id=row.id, state="failed", now=now)
        behind = _not_on_new_ca(db, row.id, changed)
    print(f"renewal {row.id} abandoned; pair {row.pair} is free")
    for line in behind:
        print(f"  not on the new CA: {line}")
    return 0


def _not_on_new_ca(db: Session, renewal_id: str, regenerated: list[str]) -> list[str]:
    """Per regenerated FMC, the devices its verify did not verify (or that were never verified)."""
    lines = []
    steps = store.steps_of(session=db, renewal_id=renewal_id)
    for fmc in regenerated:
        peers = {s.device for s in steps if s.fmc == fmc and s.device and s.step == "push"}
        verified = {
            s.device
            for s in steps
            if s.fmc == fmc and s.device and s.step == "verify" and s.state == "succeeded"
        }
        lines += [f"{fmc} -> {device}" for device in sorted(peers - verified)]
    return lines
