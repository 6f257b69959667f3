"""The operator's renewal commands: enqueue, status, retry, history."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from typing import Any

from rich.console import Console
from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline import flow, report, store
from pipeline.devices.factory import SessionFactory
from pipeline.errors import ConfigError
from pipeline.inventory import FmcPair
from pipeline.plan import FmcPlan, PeerPlan, gate, stranded_peers
from pipeline.secrets import SecretResolver
from pipeline.settings import Settings
from pipeline.store.checks import ServiceUnreachableError
from pipeline.store.crypto import artifact_key
from sftrenew import actions, reading
from sftrenew.checks import celery_app, check_devices, engine_of, inventory_of
from sftrenew.operators import operator_name
from sftrenew.planning import plan_pair
from sftrenew.services import broker_failure, check_broker
from sftrenew.watching import Watch, status_tables
from tasks import artifacts
from tasks.context import Context
from tasks.flow import advance

Sub = Any

EXIT_NOT_VERIFIED = 1
#: `enqueue`: the plan gate refused (a device would be stranded, or a CA is not due); nothing was started.
EXIT_REFUSED = 1


def add_commands(sub: Sub) -> None:
    enqueue = sub.add_parser("enqueue", help="start a renewal of an FMC pair (or show the one running)")
    enqueue.add_argument("--pair", required=True, help="the pair's name in the inventory")
    enqueue.add_argument("--by", help="who asks (default: SFTRENEW_OPERATOR, else the login name)")
    enqueue.add_argument(
        "--accept-stranded",
        action="append",
        default=[],
        metavar="NAME",
        help="start even though the plan says this device would be stranded (repeatable; recorded)",
    )
    enqueue.add_argument(
        "--force", action="store_true", help="renew CAs that are not due yet (needs --reason; recorded)"
    )
    enqueue.add_argument("--reason", help="why the renewal is forced (with --force)")
    enqueue.add_argument(
        "--hold",
        action="store_true",
        help="run backup and validate, then wait for `sftrenew approve` before regenerating "
        "(always, with SFTRENEW_REQUIRE_APPROVAL=true)",
    )
    enqueue.set_defaults(run=_enqueue)

    status = sub.add_parser("status", help="a renewal's steps per FMC and device (default: the last one)")
    status.add_argument("renewal", nargs="?", help="renewal id")
    status.add_argument(
        "--watch", action="store_true", help="refresh until the renewal ends (a line per change when piped)"
    )
    status.add_argument(
        "--json", action="store_true", help="print the record as a JSON document (docs/cli.md)"
    )
    status.add_argument("--interval", type=positive_seconds, default=2.0, help="seconds between refreshes")
    status.set_defaults(run=_status)

    retry = sub.add_parser(
        "retry", help="push again to the devices that failed, then verify (no regeneration)"
    )
    retry.add_argument("renewal", help="renewal id")
    retry.add_argument("--device", action="append", default=[], help="only this device (repeatable)")
    retry.add_argument("--by", help="who asks (default: SFTRENEW_OPERATOR, else the login name)")
    retry.set_defaults(run=_retry)

    history = sub.add_parser("history", help="past renewals, newest first")
    history.add_argument("--pair")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true", help="print them as a JSON document (docs/cli.md)")
    history.set_defaults(run=_history)


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def flower_url(settings: Settings) -> str:
    return settings.flower.url or f"http://{settings.flower.address}:{settings.flower.port}"


def _enqueue(args: argparse.Namespace, settings: Settings) -> int:
    # Everything a worker will need, checked before the renewal row exists: a renewal no worker can run
    # must not be started (nor block its pair).
    inventory = inventory_of(settings)
    pair = inventory.pair(args.pair)
    _check_gate_args(args, pair)
    check_devices(settings, inventory, [pair])
    artifact_key(settings.artifact_key)
    engine = engine_of(settings)
    celery_app(settings)
    check_broker(settings)
    who = operator_name(args.by, settings)
    with store.open_session(engine) as db:
        running = store.active_renewal(session=db, pair=pair.name)
    if running is not None:
        _enqueued(settings, running.id, created=False)
        return 0
    # The plan gate: read-only, before anything is recorded or changed.
    factory = SessionFactory(inventory, pair.name, SecretResolver(inventory, os.environ), settings)
    planned = plan_pair(factory, pair, settings)
    print("\n".join(planned.lines()))
    accepted = frozenset(args.accept_stranded)
    refusal = gate(
        planned.plan, accepted=accepted, forced=args.force, renew_within_days=settings.renew_within_days
    )
    if refusal is not None:
        for line in refusal.lines():
            print(f"sftrenew: refused: {line}", file=sys.stderr)
        print("sftrenew: nothing was started or changed", file=sys.stderr)
        return EXIT_REFUSED
    stranded = stranded_peers(planned.plan)
    not_due = [f for f in planned.plan.fmcs if f.ca_days_left > settings.renew_within_days]
    with store.open_session(engine) as db:
        renewal, created = store.start_renewal(
            session=db,
            pair=pair.name,
            requested_by=who,
            fmcs=[(pair.primary.name, "primary"), (pair.secondary.name, "secondary")],
            now=Context.now(),
        )
        if created:
            _record_gate(
                db, renewal.id, who, args, stranded, not_due, hold_required=settings.require_approval
            )
            for facts in planned.facts:
                artifacts.save_plan(db, renewal.id, facts, now=Context.now())
    if created:
        try:
            advance(Context(settings), renewal.id, pair)
        except Exception as exc:
            _end_unsent(engine, renewal.id)
            problem = broker_failure(settings, exc)
            if problem is None:
                raise
            raise ServiceUnreachableError(
                f"{problem}; renewal {renewal.id} was ended as failed (nothing ran): enqueue again once "
                "the broker answers"
            ) from exc
    for name in sorted(accepted & stranded.keys()):
        print(f"accepted by {who}: {stranded[name].describe()}")
    _enqueued(settings, renewal.id, created=created)
    return 0


def _check_gate_args(args: argparse.Namespace, pair: FmcPair) -> None:
    """The gate's arguments make sense: --force with a reason, and devices accepted by names of the pair."""
    if args.force != bool(args.reason and args.reason.strip()):
        raise ConfigError("--force and --reason TEXT go together: say why a CA that is not due is renewed")
    devices = {f.name for f in pair.fmcs} | {f.name for f in pair.ftds}
    unknown = sorted(set(args.accept_stranded) - devices)
    if unknown:
        raise ConfigError(
            f"--accept-stranded {', '.join(unknown)}: no such device in pair {pair.name} "
            f"(its devices: {', '.join(sorted(devices))})"
        )


def _record_gate(
    db: Session,
    renewal_id: str,
    who: str,
    args: argparse.Namespace,
    stranded: dict[str, PeerPlan],
    not_due: list[FmcPlan],
    *,
    hold_required: bool,
) -> None:
    """Who asked, which stranded devices they accepted and why each would be stranded, why a renewal of CAs
    that are not due was forced, and whether it waits for approval."""
    now = Context.now()
    store.add_event(session=db, renewal_id=renewal_id, action="enqueue", now=now, who=who)
    if args.hold or hold_required:
        why = "--hold" if args.hold else "SFTRENEW_REQUIRE_APPROVAL"
        store.add_event(session=db, renewal_id=renewal_id, action="hold", now=now, who=who, detail=why)
    for name in sorted(set(args.accept_stranded) & stranded.keys()):
        store.add_event(
            session=db,
            renewal_id=renewal_id,
            action="accept-stranded",
            now=now,
            who=who,
            device=name,
            detail=stranded[name].describe(),
        )
    if args.force:
        days = ", ".join(f"{f.fmc} {f.ca_days_left} days left" for f in not_due) or "every CA due"
        store.add_event(
            session=db,
            renewal_id=renewal_id,
            action="force",
            now=now,
            who=who,
            detail=f"{args.reason.strip()} ({days})",
        )


def _enqueued(settings: Settings, renewal_id: str, *, created: bool) -> None:
    print(renewal_id)
    print(
        f"{'enqueued' if created else 'already running'}: watch it in Flower at {flower_url(settings)}/tasks "
        f"or with `sftrenew status {renewal_id} --watch`"
    )


def _end_unsent(engine: Engine, renewal_id: str) -> None:
    """The renewal's first task could not be sent: end it as failed, so it does not block its pair."""
    now = Context.now()
    with store.open_session(engine) as db:
        for fmc in store.fmcs_of(session=db, renewal_id=renewal_id):
            if fmc.state == "running":
                store.set_fmc_state(session=db, renewal_id=renewal_id, fmc=fmc.fmc, state="failed", now=now)
        store.finish_renewal(session=db, renewal_id=renewal_id, state="failed", now=now)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    engine = engine_of(settings)
    if args.json and args.watch:
        raise ConfigError("status: --json prints the record once; drop --watch (or poll --json yourself)")
    console = Console(highlight=False)
    with contextlib.ExitStack() as stack:
        watch = stack.enter_context(Watch(console=console)) if args.watch else None
        while True:
            with store.open_session(engine) as db:
                seen = reading.read_renewal(db, args.renewal)
                planned = artifacts.planned_peers(db, seen.renewal.id)
            row, fmcs, steps = seen.renewal, seen.fmcs, seen.steps
            document = report.status_document(
                row, fmcs, steps, seen.events, held=seen.held, paused=seen.paused, planned=planned
            )
            code = 0 if row.state == "succeeded" else EXIT_NOT_VERIFIED
            if args.json:
                print(json.dumps(document, indent=2))
                return code
            extra = _awaiting_text(row.id, seen.plans) if seen.held else ""
            if seen.paused:
                extra += f"\nPAUSED: no push starts and verify waits until `sftrenew resume {row.id}`\n"
            text = report.render(row, fmcs, steps, seen.events) + extra
            tables = status_tables(document, extra) if console.is_terminal else None
            if watch is not None:
                watch.show(*report.progress(fmcs, steps, planned), row.state, text, tables)
            elif tables is not None:
                console.print(tables)
            else:
                print(text, end="")
            if watch is None or row.state not in ("queued", "running"):
                return code
            time.sleep(args.interval)


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    who = operator_name(args.by, settings)

    def sent(plan: flow.RetryRound) -> None:
        print(f"{plan.fmc}: pushing again to {', '.join(plan.devices)} (round {plan.round}, asked by {who})")

    outcome = actions.retry(actions.Desk(settings), args.renewal, devices=args.device, by=who, sent=sent)
    if not outcome.rounds:
        print("nothing to retry: no failed push" + (" for those devices" if args.device else ""))
    return 0


def _awaiting_text(renewal_id: str, plans: list[store.Artifact]) -> str:
    """What a held renewal waits for, and the plan recorded at enqueue that an approval approves."""
    out = [
        "",
        f"AWAITING APPROVAL: no CA is regenerated until `sftrenew approve {renewal_id} --by WHO`",
        "(it plans again and refuses if the plan below changed); the plan at enqueue:",
    ]
    for planned in reading.plans_of(renewal_id, plans):
        out.append(f"  {planned.fmc}: CA has {planned.ca_days_left} days left")
        for peer in planned.peers:
            out.append(f"    {peer.name}: {peer.action} ({peer.routes})")
    return "\n".join(out) + "\n"


def _history(args: argparse.Namespace, settings: Settings) -> int:
    engine = engine_of(settings)
    with store.open_session(engine) as db:
        rows = store.history(session=db, pair=args.pair, limit=args.limit)
    if args.pair and not rows and not _in_inventory(settings, args.pair):
        raise ConfigError(
            f"--pair {args.pair}: no renewal of that pair is recorded and the inventory has no such pair "
            "(`sftrenew history` lists every renewal)"
        )
    if args.json:
        print(json.dumps(report.history_document(rows), indent=2))
        return 0
    for row in rows:
        ended = f"{row.finished_at_utc:%Y-%m-%d %H:%M}" if row.finished_at_utc else "-"
        print(
            f"{row.id}  {row.pair:<12} {row.state:<10} {row.requested_at_utc:%Y-%m-%d %H:%M}  {ended}  "
            f"{row.requested_by}"
        )
    return 0


def _in_inventory(settings: Settings, pair: str) -> bool:
    """Whether the inventory (when one is set) has the pair: its empty history is then an answer."""
    if settings.inventory is None:
        return False
    return pair in inventory_of(settings).pairs
