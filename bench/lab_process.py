"""The lab of a benchmark, in its own process: `sftrenew lab serve`, as an operator runs it.

Its own process, so the lab's event loop (every device's SSH server, bash and tunnels) never shares the GIL
with what is measured (the bench's own thread pool, or the worker). Its SSH counters (`sftlab.shell.usage`)
are read across the process boundary the way `sftrenew lab serve` offers: the bench removes `usage.json`,
sends SIGUSR1, and waits for the lab to write the file again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sftlab.cli import USAGE_FILE
from sftlab.fleet.spec import FMC_NAMES, JUMP, build_spec, ftd_names

SFTRENEW = str(Path(sys.executable).parent / "sftrenew")


def bench_spec(ftds: int, latency_ms: int) -> dict[str, Any]:
    """The benchmark's lab: the `expired` scenario, every FTD's tunnel down (so every FTD needs an SSH
    push), and `latency_ms` on every device, the FMCs and the jump server included."""
    devices: dict[str, dict[str, Any]] = {n: {"latency_ms": latency_ms} for n in (*FMC_NAMES, JUMP)}
    devices.update({n: {"tunnel": "down", "latency_ms": latency_ms} for n in ftd_names(ftds)})
    spec = {"ftds": ftds, "scenarios": ["expired"], "devices": devices}
    build_spec(spec, source="bench")  # refused here, before any process starts, if the lab would refuse it
    return spec


@dataclass
class SessionRecord:
    """One SSH session the lab counted: the device, when it opened (epoch seconds) and its round trips."""

    device: str
    kind: str
    opened_at: float
    round_trips: int


class LabProcess:
    """`sftrenew lab serve --spec` on a benchmark spec, with its files in `directory`."""

    def __init__(self, directory: Path, spec: dict[str, Any]) -> None:
        self.directory = directory
        self._spec = spec
        self._process: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0

    @property
    def inventory(self) -> Path:
        return self.directory / "inventory.yaml"

    @property
    def pid(self) -> int:
        assert self._process is not None, "the lab is not running"
        return self._process.pid

    def start(self, timeout: float = 600.0) -> None:
        """Start the lab and return once it wrote its inventory (its readiness signal)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        spec_file = self.directory.parent / f"{self.directory.name}-spec.yaml"
        spec_file.write_text(yaml.safe_dump(self._spec))
        started = time.monotonic()
        with (self.directory.parent / f"{self.directory.name}.log").open("ab") as log:
            self._process = subprocess.Popen(
                [SFTRENEW, "lab", "serve", "--dir", str(self.directory), "--spec", str(spec_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while not self.inventory.exists():
            if self._process.poll() is not None:
                raise RuntimeError(f"the lab exited with {self._process.returncode}; see {log.name}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the lab was not ready within {timeout:g} s; see {log.name}")
            time.sleep(0.2)
        self.started_in_s = time.monotonic() - started

    def info(self) -> dict[str, Any]:
        """lab.json: each device's name, role, UUID, address and knobs."""
        data: dict[str, Any] = json.loads((self.directory / "lab.json").read_text())
        return data

    def uuids(self) -> dict[str, str]:
        return {d["name"]: d["uuid"] for d in self.info()["devices"]}

    def sessions(self, timeout: float = 60.0) -> list[SessionRecord]:
        """Every SSH session the lab counted so far, on every device (SIGUSR1, then usage.json)."""
        usage = self.directory / USAGE_FILE
        usage.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not usage.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the lab did not write {usage} within {timeout:g} s of SIGUSR1")
            time.sleep(0.05)
        devices = json.loads(usage.read_text())["devices"]
        return [
            SessionRecord(name, s["kind"], s["opened_at"], s["round_trips"])
            for name, data in devices.items()
            for s in data["sessions"]
        ]

    def cpu_seconds(self) -> float:
        """CPU time of the lab process and of the children it reaped (its bash processes)."""
        return cpu_seconds(self.pid, with_reaped_children=True)

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
        except ProcessLookupError:
            pass
        self._process = None


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    """utime + stime of `pid` from /proc (plus cutime + cstime when asked); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name, state (field 3) is index 0: utime (14) is 11, stime 12, cutime 13, cstime 14.
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")
