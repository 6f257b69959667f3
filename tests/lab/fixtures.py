"""Lab fixtures: real fleets on loopback, started with a readiness signal (never a sleep).

A fleet is cheap (about a second with a warm key cache), so tests that change a fleet get their own; tests
that only look share one per module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sftlab.fleet.keys import KeyPool, default_cache_dir
from sftlab.fleet.runner import LabRunner
from sftlab.fleet.running import Fleet
from sftlab.fleet.spec import build_spec
from tests.lab.client import Shell, Target, open_client


@dataclass
class RunningLab:
    runner: LabRunner
    fleet: Fleet
    directory: Path

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.directory / "lab.json").read_text())
        return data

    def device(self, name: str) -> dict[str, Any]:
        for entry in self.info["devices"]:
            if entry["name"] == name:
                return dict(entry)
        raise KeyError(name)

    @property
    def secrets(self) -> dict[str, str]:
        data: dict[str, str] = yaml.safe_load((self.directory / "secrets.yaml").read_text())
        return data

    def target(self, name: str, password: str | None = None) -> Target:
        entry = self.device(name)
        user = "operator" if entry["role"] == "jump" else "admin"
        secret = self.secrets["jump" if entry["role"] == "jump" else "fleet-admin"]
        return Target(entry["host"], entry["port"], user, password or secret)

    def shell(self, name: str, *, via_jump: bool = False) -> Shell:
        via = self.target("jump-1") if via_jump else None
        return Shell(open_client(self.target(name), self.known_hosts, via=via))

    def root_shell(self, name: str, *, via_jump: bool = False) -> Shell:
        shell = self.shell(name, via_jump=via_jump)
        shell.climb_to_root(self.secrets["fleet-admin"])
        return shell

    def file(self, name: str, device_path: str) -> Path:
        return Path(self.device(name)["root"]) / device_path.lstrip("/")

    def set_knobs(self, name: str, **changes: Any) -> None:
        self.runner.call(self.fleet.set_knobs(name, **changes))

    def restart_sftunnel(self, name: str) -> None:
        self.runner.call(self.fleet.restart_sftunnel(name))

    def connected(self, owner: str, peer: str) -> bool:
        return self.fleet.hub.is_connected(owner, peer)

    def restarts(self, name: str) -> int:
        """How often the device's own `pmtool restartbyid sftunnel` restarted its sftunnel (not counting one
        the `restart: drop_once` knob cut off, nor `restart_sftunnel`)."""
        return self.runner.call(self._restarts(name))

    async def _restarts(self, name: str) -> int:
        return self.fleet.restarts(name)

    def refused_logins(self, name: str) -> int:
        """How many SSH password logins the device refused, by any route."""
        return self.runner.call(self._refused_logins(name))

    async def _refused_logins(self, name: str) -> int:
        return self.fleet.refused_logins(name)

    def startups_dropped(self, name: str) -> int:
        """How many connections the device dropped before its banner, past its `max_startups` knob."""
        return self.runner.call(self._startups_dropped(name))

    async def _startups_dropped(self, name: str) -> int:
        return self.fleet.startups_dropped(name)

    def sessions_opened(self, name: str) -> int:
        """How many SSH sessions (interactive or exec) clients opened on the device."""
        return self.runner.call(self._sessions_opened(name))

    async def _sessions_opened(self, name: str) -> int:
        return self.fleet.sessions_opened(name)

    def round_trips(self, name: str) -> int:
        """How many command round trips clients made on the device (`sftlab.shell.usage`)."""
        return self.runner.call(self._round_trips(name))

    async def _round_trips(self, name: str) -> int:
        return self.fleet.round_trips(name)


@pytest.fixture(scope="session")
def key_pool() -> KeyPool:
    return KeyPool(default_cache_dir())


MakeLab = Callable[..., RunningLab]


@pytest.fixture
def make_lab(tmp_path: Path, key_pool: KeyPool) -> Iterator[MakeLab]:
    runners: list[LabRunner] = []

    def make(**spec: Any) -> RunningLab:
        directory = tmp_path / f"lab{len(runners)}"
        runner = LabRunner(build_spec(spec, source="test"), directory, keys=key_pool)
        runners.append(runner)
        fleet = runner.start()
        return RunningLab(runner, fleet, directory)

    yield make
    for runner in runners:
        runner.stop()


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory, key_pool: KeyPool) -> Iterator[RunningLab]:
    """A healthy 4-FTD fleet that tests in a module only look at (they must not change it)."""
    directory = tmp_path_factory.mktemp("shared-lab")
    runner = LabRunner(build_spec({"ftds": 4}, source="test"), directory, keys=key_pool)
    fleet = runner.start()
    yield RunningLab(runner, fleet, directory)
    runner.stop()
