"""`python -m lab serve ...`, the same as `sftrenew lab serve ...`."""

import argparse
import sys

from sftlab.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab")
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("serve", help="run a simulated fleet until Ctrl-C"))
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
