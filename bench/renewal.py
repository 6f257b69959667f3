"""A whole renewal of the lab's FMC pair, timed per step, and its push fan-out against a bare thread pool
and a serial loop doing the same device operations.

`./run bench renewal [--ftds N] [--latency-ms L] [--concurrency C] [--serial-sample S] [--json FILE]`

1. The product: the lab (`expired`, every FTD's tunnel down, L ms on every device) in its own process; an
   embedded Redis, SQLite and one `sftrenew worker --concurrency C`; `sftrenew enqueue --pair lab`; the
   figures come from the database record and the lab's SSH counters.
2. The comparison, on a fresh lab of the same shape: each FMC's pushes with the product's own `push_once`, in
   a bare thread pool of C threads, then one after another on a sample of S peers per FMC (extrapolated to
   every peer when S is smaller; the output says so).

What each figure means is in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fanout, figures
from bench.lab_process import LabProcess, SessionRecord, bench_spec
from bench.product_run import ProductRun, Services, run_renewal
from bench.render import render
from pipeline.settings import CelerySettings
from sftlab.fleet.spec import FMC_NAMES, ftd_names


@dataclass
class Measured:
    """Everything one benchmark run measured, for the table and the JSON file."""

    args: argparse.Namespace
    machine: dict[str, Any]
    lab_ready_s: float
    product: ProductRun
    sessions: list[SessionRecord]
    lab_cpu_s: float
    comparisons: list[figures.Comparison]
    compare_sessions: list[SessionRecord]


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _product(
    args: argparse.Namespace, directory: Path
) -> tuple[float, ProductRun, list[SessionRecord], float]:
    lab = LabProcess(directory / "lab", bench_spec(args.ftds, args.latency_ms))
    services: Services | None = None
    try:
        lab.start()
        print(
            f"lab of {args.ftds} FTDs ready in {lab.started_in_s:.1f} s; starting Redis and the worker",
            flush=True,
        )
        services = Services(directory / "product", lab.inventory, args.concurrency)
        (directory / "product").mkdir(parents=True, exist_ok=True)
        cpu_before = lab.cpu_seconds()
        run = run_renewal(services, args.timeout, lab.pid)
        lab_cpu = lab.cpu_seconds() - cpu_before
        sessions = lab.sessions()
        print(f"renewal {run.renewal_id} {run.renewal.state}", flush=True)
        return lab.started_in_s, run, sessions, lab_cpu
    finally:
        if services is not None:
            services.stop()
        lab.stop()


def _compare(
    args: argparse.Namespace, directory: Path, run: ProductRun
) -> tuple[list[figures.Comparison], list[SessionRecord]]:
    lab = LabProcess(directory / "lab-compare", bench_spec(args.ftds, args.latency_ms))
    try:
        lab.start()
        pusher = fanout.Pusher({**os.environ, "SFTRENEW_INVENTORY": str(lab.inventory)}, lab.uuids(), lab.pid)
        # The pushes the product wrote (a push that found the files new is no device write to compare).
        written = {
            fmc: figures.written_peers(run.steps, fmc) or fanout.peers_of(fmc, ftd_names(args.ftds))
            for fmc in FMC_NAMES
        }
        pools, serials = {}, {}
        for fmc in FMC_NAMES:
            print(f"bare pool of {args.concurrency} threads: {fmc}'s {len(written[fmc])} pushes", flush=True)
            pools[fmc] = pusher.pool(fmc, written[fmc], args.concurrency)
        for fmc in FMC_NAMES:
            picked = fanout.sample(written[fmc], args.serial_sample)
            print(f"serial loop: {fmc}'s pushes to {len(picked)} peers", flush=True)
            serials[fmc] = pusher.serial(fmc, picked)
        sessions = lab.sessions()
    finally:
        lab.stop()
    comparisons = [figures.compare(fmc, run, pools[fmc], serials[fmc]) for fmc in FMC_NAMES]
    return comparisons, sessions


def measure(args: argparse.Namespace, directory: Path) -> Measured:
    lab_ready, run, sessions, lab_cpu = _product(args, directory)
    comparisons: list[figures.Comparison] = []
    compare_sessions: list[SessionRecord] = []
    if not args.no_compare:
        comparisons, compare_sessions = _compare(args, directory, run)
    return Measured(args, machine(), lab_ready, run, sessions, lab_cpu, comparisons, compare_sessions)


def as_json(m: Measured) -> dict[str, Any]:
    ftds = ftd_names(m.args.ftds)
    found = figures.windows(m.product.steps)
    renewal = m.product.renewal
    end = renewal.finished_at_utc.timestamp() if renewal.finished_at_utc else time.time()
    return {
        "parameters": {
            "ftds": m.args.ftds,
            "latency_ms": m.args.latency_ms,
            "concurrency": m.args.concurrency,
            "serial_sample": m.args.serial_sample,
        },
        "machine": m.machine,
        "renewal": {
            "id": m.product.renewal_id,
            "state": renewal.state,
            "wall_s": end - renewal.requested_at_utc.timestamp(),
            "enqueue_s": m.product.enqueue_s,
            "verified": {fmc: figures.verified(m.product.steps, fmc)[:2] for fmc in FMC_NAMES},
        },
        "steps": [
            {**w.__dict__, "wall_s": w.wall_s, **figures.usage(m.sessions, ftds, w.start, w.end).__dict__}
            for w in found
        ],
        "whole_run_usage": figures.usage(m.sessions, ftds, 0, float("inf")).__dict__,
        "worker": {
            "peak_rss_mb_largest_process": m.product.peaks.largest_mb,
            "peak_rss_mb_tree": m.product.peaks.total_mb,
            "cpu_s": sum(m.product.peaks.cpu_s.values()),
        },
        "machine_load_during_renewal": {
            "mean": statistics.fmean(m.product.peaks.load or [0]),
            "max": max(m.product.peaks.load or [0]),
        },
        "lab_cpu_s_during_renewal": m.lab_cpu_s,
        "push_comparison": [
            {
                "fmc": c.fmc,
                "peers": c.peers,
                "written": c.written,
                "product_s": c.product_s,
                "bare_pool_s": c.pool.wall_s,
                "serial_s": c.serial_s,
                "serial_extrapolated_from": len(c.serial.pushes) if c.extrapolated else None,
                "product_over_pool": c.product_over_pool,
                "serial_over_product": c.serial_over_product,
                "outside_device_io_fanout": c.outside_io_fanout,
                "outside_device_io_attempts": c.outside_io_attempts,
                "cpu_s_per_push": {
                    "product_worker": c.product_cpu_s / c.written,
                    "bare_pool_process": c.pool.client_cpu_s / c.written,
                    "lab_during_product": c.product_lab_cpu_s / c.written,
                    "lab_during_bare_pool": c.pool.lab_cpu_s / c.written,
                },
                "mean_push_s": {
                    "product_attempt": c.product_attempts_s / max(1, c.written),
                    "bare_pool": statistics.fmean(p.seconds for p in c.pool.pushes),
                    "serial": statistics.fmean(p.seconds for p in c.serial.pushes),
                },
            }
            for c in m.comparisons
        ],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench renewal", description=__doc__.splitlines()[0])
    parser.add_argument("--ftds", type=int, default=50)
    parser.add_argument("--latency-ms", type=int, default=50, help="on every device (transit delay)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=CelerySettings().concurrency,
        help="worker threads, and the bare pool's (default: the worker's own default)",
    )
    parser.add_argument("--serial-sample", type=int, default=10, help="peers per FMC for the serial loop")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the renewal")
    parser.add_argument("--no-compare", action="store_true", help="only the product's run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--dir", type=Path, help="keep every file (lab, logs, database) in this folder")
    args = parser.parse_args(argv)
    if args.dir is not None and args.dir.is_dir() and any(args.dir.iterdir()):
        # An earlier run's lab would start from the state that run left (renewed files, a new CA), and its
        # database holds that renewal: the figures would be of another run, or it fails half-way.
        parser.error(f"--dir {args.dir} holds files already (an earlier run's?); give a new or empty folder")
    directory = args.dir.resolve() if args.dir else Path(tempfile.mkdtemp(prefix="bench-renewal-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        measured = measure(args, directory)
    except BaseException:
        print(f"bench renewal: stopped; its files are kept in {directory}")
        raise
    print(render(measured))
    if args.json:
        args.json.write_text(json.dumps(as_json(measured), indent=2, default=str) + "\n")
    if args.dir is None:
        shutil.rmtree(directory, ignore_errors=True)
    return 0 if measured.product.renewal.state == "succeeded" else 1
