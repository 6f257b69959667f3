"""The product's renewal, run for real: an embedded Redis, SQLite, one `sftrenew worker --concurrency C`,
`sftrenew enqueue`; then its record read back from the database.

Everything goes through the product's public doors (the `sftrenew` commands, `SFTRENEW_*` variables, each
process given only the secrets of its role, as the demo does). While the renewal runs, the worker's process
tree is sampled once a second for its peak memory (VmHWM) and CPU time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.lab_process import SFTRENEW, cpu_seconds
from pipeline import store
from pipeline.settings import Settings
from sftrenew.environments import environment_for
from workers.embedded import EmbeddedRedis

ACTIVE_STATES = ("queued", "running")


@dataclass
class CpuTimeline:
    """CPU seconds of a process (tree) sampled over time, to tell how much CPU a time window took."""

    samples: list[tuple[float, float]] = field(default_factory=list)

    def add(self, cpu_s: float) -> None:
        self.samples.append((time.time(), cpu_s))

    def between(self, start: float, end: float) -> float:
        """CPU used from the last sample at or before `start` to the first at or after `end` (the window
        widened to the samples around it: about a second each side)."""
        before = [cpu for at, cpu in self.samples if at <= start] or [self.samples[0][1]]
        after = [cpu for at, cpu in self.samples if at >= end] or [self.samples[-1][1]]
        return after[0] - before[-1]


@dataclass
class ProcessPeaks:
    """Peak memory (VmHWM, kB) per process of a tree, and CPU seconds, as last sampled; the tree's CPU
    over time, and the lab's."""

    hwm_kb: dict[int, int] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)
    cpu: CpuTimeline = field(default_factory=CpuTimeline)
    lab_cpu: CpuTimeline = field(default_factory=CpuTimeline)
    #: The machine's 1-minute load average at each sample: others' work shares the CPUs too.
    load: list[float] = field(default_factory=list)

    def sample(self, root: int, lab: int) -> None:
        for pid in (root, *descendants(root)):
            hwm = _status_kb(pid, "VmHWM")
            if hwm is not None:
                self.hwm_kb[pid] = max(hwm, self.hwm_kb.get(pid, 0))
                self.cpu_s[pid] = cpu_seconds(pid)
        self.cpu.add(sum(self.cpu_s.values()))
        self.lab_cpu.add(cpu_seconds(lab, with_reaped_children=True))
        with contextlib.suppress(OSError, ValueError):
            self.load.append(float(Path("/proc/loadavg").read_text().split()[0]))

    @property
    def largest_mb(self) -> float:
        return max(self.hwm_kb.values(), default=0) / 1024

    @property
    def total_mb(self) -> float:
        return sum(self.hwm_kb.values()) / 1024


def descendants(root: int) -> list[int]:
    """Every live process below `root`, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class ProductRun:
    """What the product's run left: the renewal's id and record, and the worker's peaks."""

    renewal_id: str
    renewal: store.Renewal
    fmcs: list[store.RenewalFmc]
    steps: list[store.StepRun]
    peaks: ProcessPeaks
    worker_ready_s: float
    #: How long `sftrenew enqueue` took: its plan gate validates both FMCs, read-only, before the renewal
    #: exists (not part of the renewal's own time, which starts when its row is written).
    enqueue_s: float = 0.0


class Services:
    """Redis, SQLite and one worker for a renewal of the lab's pair, in `directory`."""

    def __init__(self, directory: Path, inventory: Path, concurrency: int) -> None:
        self.directory = directory
        self.concurrency = concurrency
        self.redis = EmbeddedRedis(directory / "redis")
        self.database_url = f"sqlite:///{directory / 'sftrenew.db'}"
        self.env = {
            **os.environ,
            "SFTRENEW_INVENTORY": str(inventory),
            "SFTRENEW_DATABASE_URL": self.database_url,
            "SFTRENEW_ARTIFACT_KEY": store.new_artifact_key(),
            # validate probes the peers with threads of its own, sized by this variable, not --concurrency.
            "SFTRENEW_WORKER_CONCURRENCY": str(concurrency),
            "PYTHONUNBUFFERED": "1",
        }
        self.worker: subprocess.Popen[bytes] | None = None
        self.engine = store.make_engine(Settings(database_url=self.database_url))

    def start(self) -> float:
        """Start Redis, create the schema (`sftrenew migrate`'s job), start the worker; return how long the
        worker took to say it is ready."""
        self.redis.start()
        self.env["SFTRENEW_BROKER_URL"] = f"{self.redis.url}/0"
        self.env["SFTRENEW_RESULT_BACKEND"] = f"{self.redis.url}/1"
        store.migrate(self.engine)
        log = self.directory / "worker.log"
        started = time.monotonic()
        with log.open("ab") as out:
            self.worker = subprocess.Popen(
                [SFTRENEW, "worker", f"--concurrency={self.concurrency}", "--hostname=bench@%h"],
                env=environment_for("worker", self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.directory,
            )
        while " ready." not in log.read_text(errors="replace"):
            if self.worker.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError(f"the worker did not start; see {log}")
            time.sleep(0.2)
        return time.monotonic() - started

    def enqueue(self) -> str:
        done = subprocess.run(
            [SFTRENEW, "enqueue", "--pair", "lab", "--by", "bench"],
            env=environment_for("command", self.env),
            capture_output=True,
            text=True,
            check=False,
            cwd=self.directory,
        )
        if done.returncode != 0:
            raise RuntimeError(f"sftrenew enqueue failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.splitlines()[-2]  # the plan first, then the id and a line about Flower

    def wait(self, renewal_id: str, timeout: float, peaks: ProcessPeaks, lab: int) -> store.Renewal:
        """Poll the record until the renewal ends, sampling the worker's processes and the lab meanwhile."""
        assert self.worker is not None
        deadline = time.monotonic() + timeout
        while True:
            peaks.sample(self.worker.pid, lab)
            with store.open_session(self.engine) as db:
                row = store.renewal(session=db, renewal_id=renewal_id)
            assert row is not None
            if row.state not in ACTIVE_STATES:
                return row
            if self.worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.directory / 'worker.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"renewal {renewal_id} still {row.state} after {timeout:g} s")
            time.sleep(1.0)

    def record(self, renewal_id: str) -> tuple[list[store.RenewalFmc], list[store.StepRun]]:
        with store.open_session(self.engine) as db:
            return (
                store.fmcs_of(session=db, renewal_id=renewal_id),
                store.steps_of(session=db, renewal_id=renewal_id),
            )

    def stop(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait(timeout=30)
            self.worker = None
        self.redis.stop()
        self.engine.dispose()


def run_renewal(services: Services, timeout: float, lab: int) -> ProductRun:
    """Start the services, enqueue the pair's renewal, wait for its end and read its record; `lab` is the
    lab's process, whose CPU is sampled with the worker's."""
    ready = services.start()
    assert services.worker is not None
    peaks = ProcessPeaks()
    peaks.sample(services.worker.pid, lab)
    asked = time.monotonic()
    renewal_id = services.enqueue()
    enqueue_s = time.monotonic() - asked
    row = services.wait(renewal_id, timeout, peaks, lab)
    peaks.sample(services.worker.pid, lab)  # VmHWM is the peak of a live process: read before it stops
    fmcs, steps = services.record(renewal_id)
    return ProductRun(renewal_id, row, fmcs, steps, peaks, ready, enqueue_s)
