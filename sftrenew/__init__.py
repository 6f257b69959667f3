"""`sftrenew`: the operator's command line, a thin adapter over the pipeline (STYLE lesson 15).

Each command parses its arguments, loads the settings, calls the pipeline and renders the result; a
`SftrenewError` becomes one line naming the fix and a non-zero exit (the traceback only with `--debug`).
Commands that need Celery or the lab import them inside the command, so `import pipeline` stays free of both.
Exit codes are documented in docs/cli.md: every command checks what it uses (settings, inventory, secrets,
artifact key, database, broker) before it writes anything, and says in one line what is wrong.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from pipeline.errors import ConfigError, InventoryError, SftrenewError
from pipeline.settings import load_settings
from pipeline.store.checks import ServiceUnreachableError
from sftrenew import approvals, demo, fleet, inventory_cmd, renewals, reporting, restoring, services
from sftrenew.web import cli as web

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_UNREACHABLE = 4
#: A bug: an exception sftrenew did not expect (the traceback with --debug).
EXIT_INTERNAL = 70


#: The commands that read the inventory, which take `--inventory PATH` (else SFTRENEW_INVENTORY).
READS_INVENTORY = ("enqueue", "retry", "approve", "restore", "plan", "check", "worker", "reconcile")
#: The long-running services: their logs are the libraries' too (Celery, Flower, the lab's asyncssh).
SERVICES = ("worker", "flower", "lab", "demo")
#: The loggers an operator's command shows without --debug: sftrenew's own, not paramiko's or Celery's.
OWN_LOGGERS = ("sftrenew", "pipeline", "tasks", "workers")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftrenew", description="Renew the FMC InternalCA and bring every FTD back onto sftunnel."
    )
    parser.add_argument("--version", action="version", version=f"sftrenew {_version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="log at debug level (the libraries' lines too) and show tracebacks",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    renewals.add_commands(sub)
    approvals.add_commands(sub)
    restoring.add_commands(sub)
    reporting.add_commands(sub)
    fleet.add_commands(sub)
    inventory_cmd.add_commands(sub)
    services.add_commands(sub)
    web.add_commands(sub)
    demo.add_command(sub)
    sub.choices["demo"].set_defaults(preflight=services.demo_preflight)
    for name in READS_INVENTORY:
        sub.choices[name].add_argument(
            "--inventory", type=Path, metavar="PATH", help="the inventory file (default: $SFTRENEW_INVENTORY)"
        )
    return parser


def _version() -> str:
    try:
        return metadata.version("sftrenew")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _configure_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.debug or args.command in SERVICES:
        return
    for handler in logging.getLogger().handlers:
        handler.addFilter(_OwnLoggers())


class _OwnLoggers(logging.Filter):
    """Keeps a record whose logger is sftrenew's (paramiko's "Secsh channel open FAILED" is not an
    operator's business: the error it leads to says what failed, in sftrenew's words)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] in OWN_LOGGERS


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    if getattr(args, "inventory", None) is not None:
        # One way in for the settings: the flag is the variable, for this process and those it starts.
        os.environ["SFTRENEW_INVENTORY"] = str(args.inventory)
    input_exit: int = getattr(args, "input_exit", EXIT_USAGE)
    try:
        settings = load_settings(os.environ)
        preflight = getattr(args, "preflight", None)
        if preflight is not None:
            preflight(settings)
        result: int = args.run(args, settings)
    except (ConfigError, InventoryError) as exc:
        if args.debug:
            raise
        unreachable = isinstance(exc, ServiceUnreachableError) and input_exit == EXIT_USAGE
        return _fail(exc, EXIT_UNREACHABLE if unreachable else input_exit)
    except SftrenewError as exc:
        if args.debug:
            raise
        return _fail(exc, EXIT_STOPPED)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        # Not str(exc) in full: an unexpected message may quote anything; its first line says enough.
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")[:200]
        print(
            f"sftrenew: unexpected {type(exc).__name__}: {first} (a bug: run again with --debug for the "
            "traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return result


def _fail(exc: Exception, code: int) -> int:
    print(f"sftrenew: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
