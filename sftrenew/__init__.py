"""`sftrenew`: the operator's command line, a thin adapter over the pipeline (STYLE lesson 15).

Each command parses its arguments, loads the settings, calls the pipeline and renders the result; a
`SftrenewError` becomes one line naming the fix and a non-zero exit (the traceback only with `--debug`).
Commands that need Celery or the lab import them inside the command, so `import pipeline` stays free of both.
Exit codes are documented in docs/cli.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pipeline.errors import ConfigError, InventoryError, SftrenewError
from pipeline.settings import load_settings
from sftrenew import demo, fleet, renewals, services

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STOPPED = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftrenew", description="Renew the FMC InternalCA and bring every FTD back onto sftunnel."
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level and show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    renewals.add_commands(sub)
    fleet.add_commands(sub)
    services.add_commands(sub)
    demo.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(os.environ)
        result: int = args.run(args, settings)
    except (ConfigError, InventoryError) as exc:
        if args.debug:
            raise
        print(f"sftrenew: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SftrenewError as exc:
        if args.debug:
            raise
        print(f"sftrenew: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
