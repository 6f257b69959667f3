"""The renewal benchmark's report as plain text tables (docs/benchmarks.md says what each figure means)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench import figures
from sftlab.fleet.spec import FMC_NAMES, ftd_names

if TYPE_CHECKING:
    from bench.renewal import Measured

STEP_LABELS = {"push": "push fan-out"}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _pair(value: tuple[float, int]) -> str:
    return f"{value[0]:.1f} / {value[1]}"


def _step_rows(m: Measured) -> list[list[str]]:
    ftds = ftd_names(m.args.ftds)
    found = figures.windows(m.product.steps)
    rows = []
    for fmc in FMC_NAMES:
        mine = [w for w in found if w.fmc == fmc]
        for w in mine:
            u = figures.usage(m.sessions, ftds, w.start, w.end)
            label = f"{fmc} {STEP_LABELS.get(w.step, w.step)}"
            rows.append(
                [
                    label,
                    f"{w.wall_s:.1f}",
                    w.states,
                    _pair(u.ftd_sessions),
                    _pair(u.ftd_round_trips),
                    f"{u.fmc_sessions} / {u.fmc_round_trips}",
                ]
            )
        span = figures.fmc_span(fmc, found)
        if span is not None:
            gaps = (span[1] - span[0]) - sum(w.wall_s for w in mine)
            rows.append([f"{fmc} between steps", f"{gaps:.1f}", "hand-offs", "", "", ""])
            u = figures.usage(m.sessions, ftds, *span)
            rows.append(
                [
                    f"{fmc} all steps",
                    f"{span[1] - span[0]:.1f}",
                    "",
                    _pair(u.ftd_sessions),
                    _pair(u.ftd_round_trips),
                    f"{u.fmc_sessions} / {u.fmc_round_trips}",
                ]
            )
    u = figures.usage(m.sessions, ftds, 0, float("inf"))
    rows.append(
        [
            "whole run",
            "",
            "",
            _pair(u.ftd_sessions),
            _pair(u.ftd_round_trips),
            f"{u.fmc_sessions} / {u.fmc_round_trips}",
        ]
    )
    return rows


def _comparison_rows(m: Measured) -> list[list[str]]:
    rows = []
    for c in m.comparisons:
        how = f"sample of {len(c.serial.pushes)}, extrapolated" if c.extrapolated else "measured"
        rows.append(
            [
                c.fmc,
                f"{c.peers} ({c.written} written)",
                f"{c.product_s:.1f}",
                f"{c.pool.wall_s:.1f}",
                f"{c.serial_s:.1f} ({how})",
                f"{c.product_over_pool:.2f}",
                f"{c.serial_over_product:.1f}",
                f"{c.outside_io_fanout:.0%}",
                f"{c.outside_io_attempts:.0%}",
            ]
        )
    return rows


def _per_push_rows(m: Measured) -> list[list[str]]:
    ftds = ftd_names(m.args.ftds)
    rows = []
    for c in m.comparisons:
        u = figures.usage(m.compare_sessions, ftds, c.pool.started_at, c.pool.ended_at)
        rows.append(
            [
                c.fmc,
                f"{c.product_attempts_s / max(1, c.written):.2f}",
                f"{statistics.fmean(p.seconds for p in c.pool.pushes):.2f}",
                f"{statistics.fmean(p.seconds for p in c.serial.pushes):.2f}",
                f"{u.ftd_sessions[0]:.1f}",
                f"{u.ftd_round_trips[0]:.1f}",
                f"{c.product_cpu_s / c.written:.2f} / {c.pool.client_cpu_s / c.written:.2f}",
                f"{c.product_lab_cpu_s / c.written:.2f} / {c.pool.lab_cpu_s / c.written:.2f}",
            ]
        )
    return rows


def render(m: Measured) -> str:
    a, run = m.args, m.product
    renewal = run.renewal
    end = renewal.finished_at_utc or renewal.requested_at_utc
    took = (end - renewal.requested_at_utc).total_seconds()
    out = [
        "",
        f"Renewal benchmark: FMC pair + {a.ftds} FTDs, `expired`, every FTD tunnel down, {a.latency_ms} ms "
        f"on every device; one worker, {a.concurrency} threads; Redis, SQLite",
        f"machine: {m.machine['cpus']} CPUs, {m.machine['cpu_model']}; Python {m.machine['python']}; "
        f"{m.machine['date']}",
        f"lab ready in {m.lab_ready_s:.1f} s; worker ready in {run.worker_ready_s:.1f} s; machine load "
        f"(1-min average) during the renewal: mean {statistics.fmean(run.peaks.load or [0]):.1f}, "
        f"max {max(run.peaks.load or [0]):.1f}",
        f"enqueue (its plan gate: both FMCs validated read-only) {run.enqueue_s:.1f} s; then renewal "
        f"{run.renewal_id}: {renewal.state} in {took:.1f} s (its record, start to end)",
    ]
    for fmc in FMC_NAMES:
        ok, total, bad = figures.verified(run.steps, fmc)
        out.append(f"  {fmc}: {ok}/{total} peers verified" + (f"; not: {', '.join(bad[:5])}" if bad else ""))
    out += [
        "",
        table(
            [
                "step",
                "wall s",
                "attempts",
                "FTD sessions mean/max",
                "FTD round trips mean/max",
                "FMC sessions/RTs",
            ],
            _step_rows(m),
        ),
        "",
        f"worker peak RSS: {run.peaks.largest_mb:.0f} MB (largest process, VmHWM); "
        f"{run.peaks.total_mb:.0f} MB (sum over its process tree); "
        f"worker CPU {sum(run.peaks.cpu_s.values()):.0f} s; "
        f"lab CPU during the renewal {m.lab_cpu_s:.0f} s",
    ]
    if m.comparisons:
        out += [
            "",
            f"Push fan-out, per FMC: product vs the same push_once calls in a bare pool of {a.concurrency} "
            "threads and in a serial loop (fresh lab of the same shape)",
            table(
                [
                    "FMC",
                    "peers",
                    "product s",
                    "bare pool s",
                    "serial s",
                    "product/pool",
                    "serial/product",
                    "outside I/O (fan-out)",
                    "outside I/O (attempts)",
                ],
                _comparison_rows(m),
            ),
            "",
            table(
                [
                    "FMC",
                    "s/push product attempt",
                    "s/push bare pool",
                    "s/push serial",
                    "sessions/push",
                    "RTs/push",
                    "CPU s/push worker / pool",
                    "lab CPU s/push product / pool",
                ],
                _per_push_rows(m),
            ),
            "",
            "outside I/O (fan-out) = 1 - bare pool wall / product fan-out wall; outside I/O (attempts) = "
            "1 - summed bare-pool push times / summed product push attempt times (docs/benchmarks.md)",
        ]
    return "\n".join(out)
