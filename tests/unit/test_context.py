"""A worker's context reads the inventory again when its file changes, and only then (no broker, no DB)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from tasks.context import Context

INVENTORY = """
version: 1
known_hosts: known_hosts
credentials:
  admin: {{username: admin, password: {{env: SFTRENEW_TEST_PW}}}}
pairs:
  dc1:
    primary: {{name: fmc-a, host: 127.0.0.1, credential: admin}}
    secondary: {{name: fmc-b, host: 127.0.0.2, credential: admin}}
    ftds:
      - {{name: {ftd}, host: 127.0.0.3, credential: admin}}
"""


def _write(path: Path, ftd: str, mtime_ns: int) -> None:
    path.write_text(INVENTORY.format(ftd=ftd))
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    _write(path, "ftd-1", 1_000_000_000_000_000_000)
    return path


def test_the_inventory_is_read_once_while_its_file_stays_the_same(inventory: Path) -> None:
    ctx = Context(Settings(inventory=inventory))
    first = ctx.inventory()
    factory, _ = ctx.devices("dc1")
    assert ctx.inventory() is first
    assert ctx.devices("dc1")[0] is factory


def test_a_changed_file_is_read_again_and_its_factories_rebuilt(inventory: Path) -> None:
    ctx = Context(Settings(inventory=inventory))
    factory, _ = ctx.devices("dc1")
    assert factory.routes_for("ftd-1")
    _write(inventory, "ftd-22", 1_000_000_000_000_000_000)  # same mtime, another size
    assert [f.name for f in ctx.inventory().pair("dc1").ftds] == ["ftd-22"]
    rebuilt, _ = ctx.devices("dc1")
    assert rebuilt is not factory and rebuilt.routes_for("ftd-22")
    _write(inventory, "ftd-33", 2_000_000_000_000_000_000)  # same size, another mtime
    assert [f.name for f in ctx.inventory().pair("dc1").ftds] == ["ftd-33"]
    assert ctx.devices("dc1")[0] is not rebuilt


def test_a_worker_whose_inventory_vanished_says_so(inventory: Path) -> None:
    ctx = Context(Settings(inventory=inventory))
    ctx.inventory()
    inventory.unlink()
    with pytest.raises(ConfigError, match="cannot read the inventory"):
        ctx.inventory()
