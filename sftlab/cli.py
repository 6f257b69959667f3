"""`sftrenew lab serve`: run a simulated fleet in the foreground until SIGINT or SIGTERM.

SIGUSR1 writes what clients did to each device over SSH (logins, sessions, round trips: `Fleet.usage`) to
`usage.json` in the lab's folder, atomically; the lab writes it once more when it stops. A reader in another
process (a benchmark) removes the file, sends the signal and waits for the file to appear.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from sftlab.fleet.compose import start_fleet
from sftlab.fleet.spec import LabSpec, LabSpecError, build_spec, load_spec

#: Where SIGUSR1 (and the lab's stop) writes the per-device SSH usage, in the lab's folder.
USAGE_FILE = "usage.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="folder for the lab's files (default: a new temporary one)")
    parser.add_argument("--ftds", type=int, help="number of FTDs (default 4)")
    parser.add_argument(
        "--scenario", help="healthy, expired, mixed, or several joined by commas (e.g. mixed,expired)"
    )
    parser.add_argument("--spec", type=Path, help="a lab spec YAML file (docs/lab.md); flags override it")


def spec_from_args(args: argparse.Namespace) -> LabSpec:
    data: dict[str, object] = {}
    source = "command line"
    if args.spec is not None:
        source = str(args.spec)
        try:
            text = args.spec.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise LabSpecError(
                f"{source}: cannot read the lab spec ({why}); give a YAML file (docs/lab.md)"
            ) from None
        data = load_spec(text, source=source).model_dump(exclude_unset=True)
    if args.ftds is not None:
        data["ftds"] = args.ftds
    if args.scenario is not None:
        data["scenarios"] = args.scenario
    return build_spec(data, source=source)


async def serve(spec: LabSpec, directory: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.perf_counter()
    fleet = await start_fleet(spec, directory)
    usage_file = directory.resolve() / USAGE_FILE
    loop.add_signal_handler(signal.SIGUSR1, fleet.write_usage, usage_file)
    elapsed = time.perf_counter() - started
    print(f"lab ready: {fleet.inventory_path}", flush=True)
    logging.getLogger(__name__).info("lab of %d FTDs started in %.2f s", spec.ftds, elapsed)
    try:
        await stop.wait()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        await fleet.stop()
        fleet.write_usage(usage_file)


def run(args: argparse.Namespace) -> int:
    try:
        spec = spec_from_args(args)
    except (LabSpecError, OSError) as exc:
        print(f"sftrenew lab: {exc}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        directory = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sftrenew-lab-")))
        try:
            asyncio.run(serve(spec, directory))
        except LabSpecError as exc:
            print(f"sftrenew lab: {exc}", file=sys.stderr)
            return 2
    return 0
