"""Read-only commands against the live fleet: `plan` (what a renewal would do) and `check` (CA expiry)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import write_to_textfile

from pipeline import monitoring, notices, report, store
from pipeline.certs import CertFacts
from pipeline.devicepaths import CA_CERT
from pipeline.devices.factory import SessionFactory
from pipeline.errors import ConfigError, DeviceError, SftrenewError
from pipeline.secrets import SecretResolver
from pipeline.settings import Settings
from sftrenew.checks import check_devices, engine_of, inventory_of
from sftrenew.planning import plan_pair
from tasks.notify import notify, wanted

Sub = Any

CHECK_UNKNOWN = monitoring.UNKNOWN


def add_commands(sub: Sub) -> None:
    plan = sub.add_parser("plan", help="validate against the live fleet and say what a renewal would do")
    plan.add_argument("--pair", required=True)
    plan.add_argument("--json", action="store_true", help="print the plan as a JSON document (docs/cli.md)")
    plan.set_defaults(run=_plan)

    check = sub.add_parser(
        "check",
        help="CA expiry of every FMC, for monitoring: a Nagios-style first line; exit 0 ok, 1 warning, "
        "2 critical, 3 unknown",
    )
    check.add_argument("--pair", help="only this pair")
    check.add_argument("--warn-days", type=int, default=90)
    check.add_argument("--crit-days", type=int, default=30)
    check.add_argument("--json", action="store_true", help="print a JSON document instead (docs/cli.md)")
    check.add_argument(
        "--prometheus",
        metavar="FILE",
        type=Path,
        help="also write a node-exporter textfile (written whole: a temporary file renamed over FILE)",
    )
    check.add_argument(
        "--notify",
        action="store_true",
        help="tell SFTRENEW_NOTIFY when a CA is within --warn-days (or could not be read)",
    )
    # Monitoring reads 2 as CRITICAL: a check that could not look (bad settings, inventory or secrets) is
    # UNKNOWN.
    check.set_defaults(run=_check, input_exit=CHECK_UNKNOWN)


def _factory(settings: Settings, pair: str | None) -> tuple[SessionFactory, Any]:

    inventory = inventory_of(settings)
    check_devices(settings, inventory, [inventory.pair(pair)] if pair else inventory.pairs.values())
    return SessionFactory(inventory, pair, SecretResolver(inventory, os.environ), settings), inventory


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    factory, inventory = _factory(settings, args.pair)
    planned = plan_pair(factory, inventory.pair(args.pair), settings)
    stranded = bool(planned.plan.stranded)
    refused = any(f.refused for f in planned.plan.fmcs) or bool(planned.jump_refusals())
    if args.json:
        print(json.dumps(planned.document(), indent=2))
        return 1 if stranded or refused else 0
    print("\n".join(planned.lines()))
    if stranded:
        print("some devices would be stranded: give them a route (or a live tunnel) before renewing")
    if refused:
        print(
            "some devices refused a login: fix their credential or host key before renewing "
            "(a renewal does not log in to them again until `sftrenew retry`)"
        )
    return 1 if stranded or refused else 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    if args.notify and not wanted(settings):
        raise ConfigError("--notify: SFTRENEW_NOTIFY is not set; give it apprise URLs (docs/cli.md)")
    factory, inventory = _factory(settings, args.pair)
    pairs = [inventory.pair(args.pair)] if args.pair else list(inventory.pairs.values())
    now = datetime.now(UTC)
    cas = tuple(_read_ca(factory, pair.name, fmc.name, now) for pair in pairs for fmc in pair.fmcs)
    result = monitoring.CheckResult(cas, args.warn_days, args.crit_days, now)
    # The record is read only for the forms that carry it; the check itself needs no database.
    renewals = _last_renewals(settings, [p.name for p in pairs]) if args.json or args.prometheus else None
    if args.prometheus is not None:
        write_to_textfile(str(args.prometheus), monitoring.prometheus_registry(result, renewals))
    due = notices.cas_due(result) if args.notify else None
    if due is not None and not notify(settings, due):
        print("sftrenew: warning: the notification was not sent (see the log above)", file=sys.stderr)
    if args.json:
        print(monitoring.check_json(result, renewals))
    else:
        print(monitoring.nagios_line(result))
        print("\n".join(result.detail_lines()))
    return result.exit_code


def _read_ca(factory: SessionFactory, pair: str, fmc: str, now: datetime) -> monitoring.CaCheck:
    try:
        session = factory.open(fmc, factory.routes_for(fmc)[0])
        try:
            ca = CertFacts.from_pem(session.read_file(CA_CERT))
        finally:
            session.close()
    except DeviceError as exc:
        return monitoring.CaCheck(pair, fmc, error=str(exc))
    return monitoring.CaCheck(pair, fmc, ca.not_after_utc, ca.days_left(now))


def _last_renewals(settings: Settings, pairs: list[str]) -> list[monitoring.LastRenewal] | None:
    """Each pair's last renewal, from the record; None (said on stderr) when the database cannot be read:
    a monitoring check reports what it could read rather than fail on what it could not."""
    try:
        engine = engine_of(settings)
        with store.open_session(engine) as db:
            found = []
            for pair in pairs:
                row = store.last_renewal(session=db, pair=pair)
                if row is None:
                    continue
                fmcs = store.fmcs_of(session=db, renewal_id=row.id)
                steps = store.steps_of(session=db, renewal_id=row.id)
                missing = len(report.not_verified(fmcs, steps))
                found.append(monitoring.LastRenewal(pair, row.id, row.state, row.finished_at_utc, missing))
        engine.dispose()
    except SftrenewError as exc:
        print(f"sftrenew: warning: the renewal record was not read: {exc}", file=sys.stderr)
        return None
    return found
