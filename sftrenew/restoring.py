"""`sftrenew restore`: put one device's three files for one FMC back as they were before a renewal wrote them.

The record says what to put back (`push_restart.before_*`: the folder, the suffix of the copies the push kept
on the device, each file's SHA-256); `pipeline.steps.restore` checks the copies against it, puts them back
atomically, restarts sftunnel and checks again. Everything the record alone can refuse is refused before any
login (exit 1, naming the thing and the fix); a copy that is missing or changed refuses on the device, before
anything changes there (exit 1, recorded as `restore-refused`); a device lost half-way is exit 3, recorded as
`restore-failed` (running the command again finishes it). A restore is recorded as `restore` with who did it,
and `sftrenew status` shows the device `restored`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from pipeline import flow, store
from pipeline.devices.factory import SessionFactory
from pipeline.errors import BackupMismatchError, ConfigError, DeviceError
from pipeline.material import FilesBefore
from pipeline.secrets import SecretResolver
from pipeline.settings import Settings
from pipeline.steps.restore import record_refusal, restore_once
from sftrenew.checks import check_devices, engine_of, inventory_of
from sftrenew.operators import operator_name
from sftrenew.renewals import EXIT_REFUSED
from tasks.context import Context

Sub = Any


def add_commands(sub: Sub) -> None:
    restore = sub.add_parser(
        "restore", help="put one device's files for one FMC back as they were before the renewal wrote them"
    )
    restore.add_argument("renewal", help="renewal id")
    restore.add_argument("--device", required=True, help="the device (an FTD, or the HA peer FMC)")
    restore.add_argument("--fmc", required=True, help="the FMC whose files on the device are put back")
    restore.add_argument("--by", help="who restores (default: SFTRENEW_OPERATOR, else the login name)")
    restore.set_defaults(run=_restore)


class RefusedError(Exception):
    """What the record refuses before any login: the message names the thing and the fix."""


@dataclass(frozen=True)
class Target:
    renewal_id: str
    pair: str
    fmc: str
    device: str
    before: FilesBefore


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    inventory = inventory_of(settings)
    engine = engine_of(settings)
    who = operator_name(args.by, settings)
    try:
        with store.open_session(engine) as db:
            target = _target(db, args.renewal, args.fmc, args.device)
    except RefusedError as exc:
        print(f"sftrenew: refused, nothing was changed: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    pair = inventory.pair(target.pair)
    check_devices(settings, inventory, [pair])
    factory = SessionFactory(inventory, pair.name, SecretResolver(inventory, os.environ), settings)
    try:
        outcome = restore_once(factory.guarded(), target.device, target.before)
    except BackupMismatchError as exc:
        _record(engine, target, "restore-refused", who, str(exc))
        print(f"sftrenew: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except DeviceError as exc:
        _record(engine, target, "restore-failed", who, str(exc))
        raise
    _record(engine, target, "restore", who, outcome.summary())
    print(f"{target.device}: {outcome.summary()} (route {outcome.route}); recorded, by {who}")
    return 0


def _target(db: Session, renewal_id: str, fmc: str, device: str) -> Target:
    """What to restore, from the record; RefusedError for anything the record alone refuses."""
    row = store.renewal(session=db, renewal_id=renewal_id)
    if row is None:
        raise ConfigError(f"no renewal {renewal_id}; `sftrenew history` lists them")
    fmcs = [f.fmc for f in store.fmcs_of(session=db, renewal_id=row.id)]
    if fmc not in fmcs:
        raise ConfigError(f"renewal {row.id} has no FMC {fmc!r}; its FMCs: {', '.join(fmcs) or 'none'}")
    steps = store.steps_of(session=db, renewal_id=row.id)
    devices = sorted({s.device for s in steps if s.fmc == fmc and s.step == "push" and s.device})
    if device not in devices:
        raise ConfigError(
            f"renewal {row.id} pushed to no device {device!r} for {fmc}; its devices there: "
            f"{', '.join(devices) or 'none'} (`sftrenew status {row.id}`)"
        )
    if flow.takes_step(row.state) and not store.paused(session=db, renewal_id=row.id):
        raise RefusedError(
            f"renewal {row.id} is {row.state}: its pushes could write {device} again; "
            f"`sftrenew pause {row.id}` first, or wait until it ends"
        )
    if any(s.device == device and s.step == "push" and s.state == "started" for s in steps):
        raise RefusedError(f"a push to {device} is running; wait for it (`sftrenew status {row.id}`)")
    written = store.push_restart(session=db, renewal_id=row.id, fmc=fmc, device=device)
    before = store.files_before(written) if written is not None else None
    refusal = record_refusal(device, fmc, written=written is not None, recorded=before)
    if refusal is not None or before is None:
        raise RefusedError(refusal or f"no record of {device}'s files before the renewal")
    return Target(row.id, row.pair, fmc, device, before)


def _record(engine: Engine, target: Target, action: store.EventAction, who: str, detail: str) -> None:
    with store.open_session(engine) as db:
        store.add_event(
            session=db,
            renewal_id=target.renewal_id,
            action=action,
            now=Context.now(),
            who=who,
            fmc=target.fmc,
            device=target.device,
            detail=detail,
        )
