"""The operator's renewal commands: enqueue, status, retry, history."""

from __future__ import annotations

import argparse
import getpass
import time
from typing import Any, get_args

from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline import flow, report, store
from pipeline.errors import ConfigError
from pipeline.inventory import Inventory
from pipeline.secrets import read_inventory
from pipeline.settings import Settings
from tasks.context import Context
from tasks.flow import advance, pushes
from workers.app import make_celery

Sub = Any

EXIT_NOT_VERIFIED = 1
_STEP_STATES: dict[str, flow.StepState] = {state: state for state in get_args(flow.StepState)}


def add_commands(sub: Sub) -> None:
    enqueue = sub.add_parser("enqueue", help="start a renewal of an FMC pair (or show the one running)")
    enqueue.add_argument("--pair", required=True, help="the pair's name in the inventory")
    enqueue.add_argument("--by", help="who asks (default: the login name)")
    enqueue.set_defaults(run=_enqueue)

    status = sub.add_parser("status", help="a renewal's steps per FMC and device (default: the last one)")
    status.add_argument("renewal", nargs="?", help="renewal id")
    status.add_argument("--watch", action="store_true", help="refresh until the renewal ends")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    status.set_defaults(run=_status)

    retry = sub.add_parser(
        "retry", help="push again to the devices that failed, then verify (no regeneration)"
    )
    retry.add_argument("renewal", help="renewal id")
    retry.add_argument("--device", action="append", default=[], help="only this device (repeatable)")
    retry.add_argument("--by", help="who asks (default: the login name)")
    retry.set_defaults(run=_retry)

    history = sub.add_parser("history", help="past renewals, newest first")
    history.add_argument("--pair")
    history.add_argument("--limit", type=int, default=20)
    history.set_defaults(run=_history)


def inventory_of(settings: Settings) -> Inventory:
    if settings.inventory is None:
        raise ConfigError("no inventory: set SFTRENEW_INVENTORY to the inventory file (docs/inventory.md)")
    return read_inventory(settings.inventory)


def _engine(settings: Settings) -> Engine:
    engine = store.make_engine(settings)
    store.migrate(engine)
    return engine


def _celery(settings: Settings) -> None:

    make_celery(settings).set_default()


def flower_url(settings: Settings) -> str:
    return settings.flower.url or f"http://{settings.flower.address}:{settings.flower.port}"


def _enqueue(args: argparse.Namespace, settings: Settings) -> int:

    pair = inventory_of(settings).pair(args.pair)
    engine = _engine(settings)
    _celery(settings)
    with store.open_session(engine) as db:
        renewal, created = store.start_renewal(
            session=db,
            pair=pair.name,
            requested_by=args.by or getpass.getuser(),
            fmcs=[(pair.primary.name, "primary"), (pair.secondary.name, "secondary")],
            now=Context.now(),
        )
    if created:
        advance(Context(settings), renewal.id, pair)
    print(renewal.id)
    print(
        f"{'enqueued' if created else 'already running'}: watch it in Flower at {flower_url(settings)}/tasks "
        f"or with `sftrenew status {renewal.id} --watch`"
    )
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings)
    while True:
        with store.open_session(engine) as db:
            row = (
                store.renewal(session=db, renewal_id=args.renewal)
                if args.renewal
                else store.last_renewal(session=db)
            )
            if row is None:
                raise ConfigError(f"no renewal {args.renewal}" if args.renewal else "no renewal recorded yet")
            fmcs = store.fmcs_of(session=db, renewal_id=row.id)
            steps = store.steps_of(session=db, renewal_id=row.id)
        text = report.render(row, fmcs, steps)
        if args.watch:
            done, total = report.progress(fmcs, steps)
            print("\x1b[2J\x1b[H" + report.progress_bar(done, total) + "\n" + text, end="", flush=True)
        else:
            print(text, end="")
        if not args.watch or row.state not in ("queued", "running"):
            return 0 if row.state == "succeeded" else EXIT_NOT_VERIFIED
        time.sleep(args.interval)


def _retry(args: argparse.Namespace, settings: Settings) -> int:

    engine = _engine(settings)
    _celery(settings)
    now = Context.now()
    with store.open_session(engine) as db:
        row = store.renewal(session=db, renewal_id=args.renewal)
        if row is None:
            raise ConfigError(f"no renewal {args.renewal}; `sftrenew history` lists them")
        renewal_id, pair_name, active = row.id, row.pair, row.state in ("queued", "running")
        plans = flow.retry_devices(_push_history(db, renewal_id), args.device)
        if isinstance(plans, flow.UnknownDevices):
            raise ConfigError(
                f"renewal {renewal_id}: {plans}; `sftrenew status {renewal_id}` lists its devices"
            )
        if not plans:
            print("nothing to retry: no failed push" + (" for those devices" if args.device else ""))
            return 0
        if not active and not store.resume_renewal(session=db, renewal_id=renewal_id, now=now):
            raise ConfigError(f"another renewal of pair {pair_name} is running; retry this one after it ends")
        for plan in plans:
            store.open_push_round(
                session=db,
                renewal_id=renewal_id,
                fmc=plan.fmc,
                round=plan.round,
                devices=plan.devices,
                now=now,
            )
            store.set_fmc_state(session=db, renewal_id=renewal_id, fmc=plan.fmc, state="running", now=now)
    pair = inventory_of(settings).pair(pair_name)
    who = args.by or getpass.getuser()
    for plan in plans:
        pushes(renewal_id, pair, plan.fmc, plan.devices, plan.round, who).apply_async()
        print(f"{plan.fmc}: pushing again to {', '.join(plan.devices)} (round {plan.round}, asked by {who})")
    return 0


def _push_history(db: Session, renewal_id: str) -> list[flow.PushHistory]:
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


def _history(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings)
    with store.open_session(engine) as db:
        rows = store.history(session=db, pair=args.pair, limit=args.limit)
    for row in rows:
        ended = f"{row.finished_at_utc:%Y-%m-%d %H:%M}" if row.finished_at_utc else "-"
        print(
            f"{row.id}  {row.pair:<12} {row.state:<10} {row.requested_at_utc:%Y-%m-%d %H:%M}  {ended}  "
            f"{row.requested_by}"
        )
    return 0
