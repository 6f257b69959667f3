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

from pipeline.errors import ConfigError, InventoryError, SftrenewError
from pipeline.settings import load_settings
from pipeline.store.checks import ServiceUnreachableError
from sftrenew import approvals, demo, fleet, renewals, restoring, services

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_UNREACHABLE = 4
#: A bug: an exception sftrenew did not expect (the traceback with --debug).
EXIT_INTERNAL = 70


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftrenew", description="Renew the FMC InternalCA and bring every FTD back onto sftunnel."
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level and show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    renewals.add_commands(sub)
    approvals.add_commands(sub)
    restoring.add_commands(sub)
    fleet.add_commands(sub)
    services.add_commands(sub)
    demo.add_command(sub)
    sub.choices["demo"].set_defaults(preflight=services.demo_preflight)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
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
