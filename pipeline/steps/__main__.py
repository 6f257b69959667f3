"""`python -m pipeline.steps --inventory FILE --pair NAME`: the five steps for one pair, in-process.

Exit codes: 0 every peer verified; 1 the renewal ran but some peer is not verified; 2 bad input (inventory,
settings, secrets); 3 a step stopped the renewal (foreign CA, FMC unreachable, a command failed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pipeline.devices.factory import SessionFactory
from pipeline.errors import ConfigError, InventoryError, SftrenewError
from pipeline.plan import FmcPlan
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import load_settings
from pipeline.steps.backup import BackupOutcome
from pipeline.steps.pair import run_pair
from pipeline.steps.push import PushOutcome
from pipeline.steps.regenerate import RegenOutcome
from pipeline.steps.verify import VerifyOutcome


def _print(step: str, outcome: object) -> None:
    if isinstance(outcome, BackupOutcome):
        print(
            f"[{outcome.fmc}] backup: {len(outcome.files)} files, CA {outcome.ca_sha256[:16]}…, "
            f"notAfter {outcome.ca_not_after_utc:%Y-%m-%d}"
        )
    elif isinstance(outcome, FmcPlan):
        print(f"[{outcome.fmc}] validate: CA has {outcome.ca_days_left} days left")
        for peer in outcome.peers:
            print(f"    {peer.describe()}")
    elif isinstance(outcome, RegenOutcome):
        verb = "ran generate_certs.pl" if outcome.ran else "already regenerated"
        print(
            f"[{outcome.fmc}] regenerate: {verb}; new CA {outcome.new_ca_sha256[:16]}…; "
            f"{len(outcome.failed_pushes) // 3} peer(s) in FAILED_PUSH"
        )
    elif isinstance(outcome, PushOutcome):
        state = "ok" if outcome.ok else f"FAILED ({outcome.error_kind})"
        print(
            f"    push {outcome.device}: {outcome.action.value} {state} via {outcome.route} "
            f"after {outcome.attempts} attempt(s)"
        )
    elif isinstance(outcome, VerifyOutcome):
        print(f"[{outcome.fmc}] verify ({outcome.polls} polls):")
        for device in outcome.devices:
            print(f"    {device.name}: {device.verdict.value} ({device.detail})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.steps", description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--pair", required=True)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    try:
        settings = load_settings(os.environ)
        inventory = read_inventory(args.inventory)
        pair = inventory.pair(args.pair)
        factory = SessionFactory(inventory, args.pair, SecretResolver(inventory, os.environ), settings)
    except (ConfigError, InventoryError) as exc:
        print(f"sftrenew: {exc}", file=sys.stderr)
        return 2
    try:
        runs = run_pair(factory, pair, settings, _print)
    except SftrenewError as exc:
        print(f"sftrenew: renewal stopped: {exc}", file=sys.stderr)
        return 3
    return 0 if all(run.verify.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
