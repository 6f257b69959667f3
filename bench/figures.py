"""The renewal benchmark's figures, from the database record, the lab's SSH counters and the comparison runs
(pure: records in, figures out).

Per FMC and step, the step's wall time is its first attempt's start to its last attempt's end, as recorded
(`step_run`); the push fan-out is the first push's start to the last push's end. An SSH session counts for the
step in whose window it opened (sessions carry their opening time, the record its steps' windows; both are
this machine's wall clock).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.fanout import FanOut
from bench.lab_process import SessionRecord
from bench.product_run import ProductRun
from pipeline import report
from pipeline.store import StepRun
from sftlab.fleet.spec import FMC_NAMES

CONTROL_STEPS = ("backup", "validate", "regenerate")


@dataclass(frozen=True)
class Window:
    """One step of one FMC: when it ran, how many attempts and in which states they ended."""

    fmc: str
    step: str
    start: float
    end: float
    attempts: int
    states: str

    @property
    def wall_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Usage:
    """SSH use in a window: per FTD mean and max of sessions and round trips; totals on the FMCs."""

    ftd_sessions: tuple[float, int]
    ftd_round_trips: tuple[float, int]
    fmc_sessions: int
    fmc_round_trips: int


def _states(rows: Sequence[StepRun]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _window(fmc: str, step: str, rows: Sequence[StepRun]) -> Window | None:
    if not rows:
        return None
    start = min(r.started_at_utc for r in rows).timestamp()
    ends = [r.finished_at_utc.timestamp() for r in rows if r.finished_at_utc is not None]
    return Window(fmc, step, start, max(ends, default=start), len(rows), _states(rows))


def windows(steps: Sequence[StepRun]) -> list[Window]:
    """Per FMC (primary, then secondary): backup, validate, regenerate, push (the fan-out), verify."""
    found = []
    for fmc in FMC_NAMES:
        mine = [s for s in steps if s.fmc == fmc]
        for step in (*CONTROL_STEPS, "push", "verify"):
            if step == "push":
                rows = [s for s in mine if s.step == "push"]
            else:
                rows = [s for s in mine if s.step == step and s.device is None]
            window = _window(fmc, step, rows)
            if window is not None:
                found.append(window)
    return found


def fmc_span(fmc: str, found: Sequence[Window]) -> tuple[float, float] | None:
    mine = [w for w in found if w.fmc == fmc]
    return (min(w.start for w in mine), max(w.end for w in mine)) if mine else None


def usage(sessions: Sequence[SessionRecord], ftds: Sequence[str], start: float, end: float) -> Usage:
    """SSH use by sessions opened in [start, end]."""
    inside = [s for s in sessions if start <= s.opened_at <= end]
    per_ftd = {name: [0, 0] for name in ftds}
    fmc_sessions = fmc_trips = 0
    for s in inside:
        if s.device in per_ftd:
            per_ftd[s.device][0] += 1
            per_ftd[s.device][1] += s.round_trips
        elif s.device in FMC_NAMES:
            fmc_sessions += 1
            fmc_trips += s.round_trips
    counts = list(per_ftd.values()) or [[0, 0]]
    return Usage(
        (statistics.fmean(c[0] for c in counts), max(c[0] for c in counts)),
        (statistics.fmean(c[1] for c in counts), max(c[1] for c in counts)),
        fmc_sessions,
        fmc_trips,
    )


def written_peers(steps: Sequence[StepRun], fmc: str) -> list[str]:
    """The peers the product's pushes for the FMC wrote to (their push succeeded; a push that found the files
    already new, pushed by generate_certs.pl over a live tunnel, is `skipped` and not among them)."""
    return sorted(
        {s.device for s in steps if s.fmc == fmc and s.step == "push" and s.state == "succeeded" and s.device}
    )


def verified(steps: Sequence[StepRun], fmc: str) -> tuple[int, int, list[str]]:
    """Peers verified for the FMC, peers pushed, and the peers not verified with their verdict."""
    lines = report.device_lines([s for s in steps if s.fmc == fmc])
    bad = [f"{d.device}: {d.verdict} {d.error}".strip() for d in lines if d.verdict != "verified"]
    return len(lines) - len(bad), len(lines), bad


@dataclass(frozen=True)
class Comparison:
    """One FMC's push fan-out: the product's (over all its peers, `peers`), a bare pool's and the serial
    loop's (measured or extrapolated from a sample) over the peers the product wrote to."""

    fmc: str
    peers: int
    product_s: float
    product_attempts_s: float
    pool: FanOut
    serial: FanOut
    #: CPU seconds the worker's processes and the lab used during the product's fan-out (sampled each second).
    product_cpu_s: float
    product_lab_cpu_s: float

    @property
    def written(self) -> int:
        """The peers the comparison wrote to: those the product wrote to."""
        return len(self.pool.pushes)

    @property
    def serial_s(self) -> float:
        """The serial loop over the written peers: measured when the sample is all of them, else the
        sample's mean push time times their number."""
        if not self.extrapolated:
            return sum(p.seconds for p in self.serial.pushes)
        return statistics.fmean(p.seconds for p in self.serial.pushes) * self.written

    @property
    def extrapolated(self) -> bool:
        return len(self.serial.pushes) < self.written

    @property
    def product_over_pool(self) -> float:
        return self.product_s / self.pool.wall_s

    @property
    def serial_over_product(self) -> float:
        return self.serial_s / self.product_s

    @property
    def outside_io_fanout(self) -> float:
        """1 - bare pool wall / product fan-out wall: the share of the product's fan-out a pool of the same
        size doing the same device I/O does not need (Celery, the database, the worker's own scheduling)."""
        return 1 - self.pool.wall_s / self.product_s

    @property
    def outside_io_attempts(self) -> float:
        """1 - summed bare-pool push times / summed product push attempt times (`step_run` windows): the
        share of the recorded attempts not explained by the same pushes' device I/O."""
        return 1 - sum(p.seconds for p in self.pool.pushes) / self.product_attempts_s


def compare(fmc: str, run: ProductRun, pool: FanOut, serial: FanOut) -> Comparison:
    """The comparison for one FMC: its fan-out window over all its pushes; its attempt times summed over the
    peers the comparison pushed to (every attempt of theirs, retries included)."""
    pushes = [s for s in run.steps if s.fmc == fmc and s.step == "push"]
    window = _window(fmc, "push", pushes)
    assert window is not None, f"no push of {fmc} in the record"
    compared = {p.device for p in pool.pushes}
    attempts = sum(
        (s.finished_at_utc - s.started_at_utc).total_seconds()
        for s in pushes
        if s.finished_at_utc is not None and s.device in compared
    )
    peers = len({s.device for s in pushes})
    cpu = run.peaks.cpu.between(window.start, window.end)
    lab_cpu = run.peaks.lab_cpu.between(window.start, window.end)
    return Comparison(fmc, peers, window.wall_s, attempts, pool, serial, cpu, lab_cpu)
