"""Read-only commands against the live fleet: `plan` (what a renewal would do) and `check` (CA expiry)."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import Any

from pipeline.certs import CertFacts
from pipeline.devicepaths import CA_CERT
from pipeline.devices.factory import SessionFactory
from pipeline.errors import DeviceError
from pipeline.secrets import SecretResolver
from pipeline.settings import Settings
from sftrenew.planning import plan_pair
from sftrenew.renewals import check_devices, inventory_of

Sub = Any

CHECK_OK, CHECK_WARN, CHECK_CRIT, CHECK_UNKNOWN = 0, 1, 2, 3


def add_commands(sub: Sub) -> None:
    plan = sub.add_parser("plan", help="validate against the live fleet and say what a renewal would do")
    plan.add_argument("--pair", required=True)
    plan.set_defaults(run=_plan)

    check = sub.add_parser(
        "check", help="CA expiry of every FMC; exit 0 ok, 1 warning, 2 critical, 3 unknown"
    )
    check.add_argument("--pair", help="only this pair")
    check.add_argument("--warn-days", type=int, default=90)
    check.add_argument("--crit-days", type=int, default=30)
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
    print("\n".join(planned.lines()))
    stranded = bool(planned.plan.stranded)
    refused = any(f.refused for f in planned.plan.fmcs) or bool(planned.jump_refusals())
    if stranded:
        print("some devices would be stranded: give them a route (or a live tunnel) before renewing")
    if refused:
        print(
            "some devices refused a login: fix their credential or host key before renewing "
            "(a renewal does not log in to them again until `sftrenew retry`)"
        )
    return 1 if stranded or refused else 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    factory, inventory = _factory(settings, args.pair)
    pairs = [inventory.pair(args.pair)] if args.pair else list(inventory.pairs.values())
    worst = CHECK_OK
    now = datetime.now(UTC)
    for pair in pairs:
        for fmc in pair.fmcs:
            try:
                session = factory.open(fmc.name, factory.routes_for(fmc.name)[0])
                try:
                    ca = CertFacts.from_pem(session.read_file(CA_CERT))
                finally:
                    session.close()
            except DeviceError as exc:
                print(f"UNKNOWN {pair.name}/{fmc.name}: {exc}")
                worst = max(worst, CHECK_UNKNOWN)
                continue
            days = ca.days_left(now)
            level = (
                CHECK_CRIT if days <= args.crit_days else CHECK_WARN if days <= args.warn_days else CHECK_OK
            )
            word = ("OK", "WARNING", "CRITICAL")[level]
            print(
                f"{word} {pair.name}/{fmc.name}: InternalCA expires {ca.not_after_utc:%Y-%m-%d} ({days} days)"
            )
            worst = max(worst, level)
    return worst
