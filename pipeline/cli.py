"""`sftrenew`: the operator's command line, a thin adapter over the pipeline.

Commands that need the lab import it lazily, inside the command, so the product's import graph stays clean
(DESIGN: the product never imports `lab` outside the demo and tests).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftrenew", description="Renew the FMC InternalCA and bring every FTD back onto sftunnel."
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("lab", help="the simulated fleet used by the tests and the demo")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    serve = lab_sub.add_parser("serve", help="run a simulated FMC pair, FTDs and a jump server until Ctrl-C")
    from lab.cli import add_arguments  # noqa: PLC0415 - the product imports the lab only for this command

    add_arguments(serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command == "lab":
        from lab.cli import run  # noqa: PLC0415

        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
