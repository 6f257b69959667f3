"""The operator's renewal commands: enqueue, status, retry, history."""

from __future__ import annotations

import argparse
import getpass
import time
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline import report, store
from pipeline.errors import ConfigError
from pipeline.inventory import Inventory
from pipeline.secrets import read_inventory
from pipeline.settings import Settings
from tasks.context import Context
from tasks.flow import advance, pushes
from workers.app import make_celery

Sub = Any

EXIT_NOT_VERIFIED = 1


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
        plans = _retry_plans(db, renewal_id, args.device)
        if not plans:
            print("nothing to retry: no failed push" + (" for those devices" if args.device else ""))
            return 0
        if not active and not store.resume_renewal(session=db, renewal_id=renewal_id, now=now):
            raise ConfigError(f"another renewal of pair {pair_name} is running; retry this one after it ends")
        for fmc_name, round_, devices in plans:
            store.open_push_round(
                session=db, renewal_id=renewal_id, fmc=fmc_name, round=round_, devices=devices, now=now
            )
            store.set_fmc_state(session=db, renewal_id=renewal_id, fmc=fmc_name, state="running", now=now)
    pair = inventory_of(settings).pair(pair_name)
    who = args.by or getpass.getuser()
    for fmc_name, round_, devices in plans:
        pushes(renewal_id, pair, fmc_name, devices, round_, who).apply_async()
        print(f"{fmc_name}: pushing again to {', '.join(devices)} (round {round_}, asked by {who})")
    return 0


def _retry_plans(db: Session, renewal_id: str, only: list[str]) -> list[tuple[str, int, list[str]]]:
    """Per FMC that regenerated: the next push round and the devices whose last push failed."""
    plans = []
    for fmc in store.fmcs_of(session=db, renewal_id=renewal_id):
        failed = {
            s.device
            for s in store.failed_pushes(session=db, renewal_id=renewal_id, fmc=fmc.fmc)
            if s.device and (not only or s.device in only)
        }
        if failed and fmc.ca_after_sha256:
            plans.append((fmc.fmc, fmc.push_round + 1, sorted(failed)))
    return plans


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
