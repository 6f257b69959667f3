"""The lab's data: specs are validated on load, and the files it writes are what a client needs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.inventory_loader import load_inventory
from sftlab.fleet.spec import LabSpecError, build_spec, load_spec, resolve
from tests.lab.fixtures import RunningLab

SPEC = """
ftds: 5
scenarios: [mixed, expired]
devices:
  ftd-005: {latency_ms: 20, sudo: lecture}
"""


def test_spec_composes_scenarios_and_overrides() -> None:
    lab = resolve(load_spec(SPEC, source="lab.yaml"))
    assert lab.knobs["fmc-primary"].ca_days_left == -30
    assert lab.knobs["ftd-003"].direct == "refuse" and lab.knobs["ftd-003"].via_jump
    assert lab.knobs["ftd-004"].direct == "drop" and not lab.knobs["ftd-004"].via_jump
    assert lab.knobs["ftd-005"].latency_ms == 20 and lab.knobs["ftd-001"].tunnel == "up"
    assert lab.predates_expiry


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftds: 2\ncolour: blue\n", r"lab\.yaml: colour: Extra inputs are not permitted"),
        ("devices:\n  ftd-001: {tunel: down}\n", r"devices\.ftd-001\.tunel: Extra inputs"),
        ("devices:\n  ftd-009: {tunnel: down}\n", r"devices\.ftd-009: no such device"),
        ("scenarios: [broken]\n", r"unknown scenario 'broken'"),
        ("network: 10.0.0.0/16\n", r"not inside 127\.0\.0\.0/8"),
        ("devices:\n  ftd-001: {ca_days_left: 3}\n", r"only FMCs hold a CA"),
        ("devices:\n  ftd-001: {direct: maybe}\n", r"devices\.ftd-001\.direct"),
        ("devices:\n  jump-1: {max_startups: '10:30'}\n", r"jump-1\.max_startups: .*start:rate:full"),
        ("devices:\n  jump-1: {max_startups: '10:30:5'}\n", r"max_startups: .*1 <= start <= full"),
        ("devices:\n  jump-1: {max_startups: 3:30:4}\n", r"max_startups: .*12604 .*quote it: '10:30:100'"),
        ("- a list\n", r"a lab spec is a mapping"),
    ],
)
def test_bad_specs_are_load_errors(text: str, message: str) -> None:
    with pytest.raises(LabSpecError, match=message):
        load_spec(text, source="lab.yaml")


def test_mixed_needs_four_ftds() -> None:
    with pytest.raises(LabSpecError, match="at least 4 FTDs"):
        resolve(build_spec({"ftds": 3, "scenarios": "mixed"}, source="flags"))


@pytest.mark.lab
def test_client_files(shared_lab: RunningLab) -> None:
    directory = shared_lab.directory
    inventory = load_inventory((directory / "inventory.yaml").read_text(), source="inventory.yaml")
    pair = inventory.pair("lab")
    assert [f.name for f in pair.fmcs] == ["fmc-primary", "fmc-secondary"]
    assert [f.name for f in pair.ftds] == ["ftd-001", "ftd-002", "ftd-003", "ftd-004"]
    assert all(f.jump == "jump-1" for f in pair.ftds)
    assert (directory / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    known = (directory / "known_hosts").read_text().splitlines()
    assert len(known) == 7 and all(re.match(r"\[127\.77\.\d+\.\d+\]:\d+ ssh-ed25519 \S+$", k) for k in known)
    devices = shared_lab.info["devices"]
    assert {d["role"] for d in devices} == {"fmc-primary", "fmc-secondary", "jump", "ftd"}
    assert all(d["host"].startswith("127.") for d in devices)
    assert len({d["host"] for d in devices}) == len(devices)
    assert all(Path(d["root"]).is_dir() for d in devices)
    for secret in shared_lab.secrets.values():
        assert secret not in (directory / "inventory.yaml").read_text()


@pytest.mark.lab
def test_sftrenew_lab_serve_runs_until_sigterm(tmp_path: Path) -> None:
    """The real command: prints one readiness line, then stops cleanly on SIGTERM."""
    sftrenew = Path(sys.executable).parent / "sftrenew"
    proc = subprocess.Popen(
        [
            str(sftrenew),
            "lab",
            "serve",
            "--dir",
            str(tmp_path / "lab"),
            "--ftds",
            "2",
            "--scenario",
            "expired",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == f"lab ready: {tmp_path / 'lab' / 'inventory.yaml'}\n"
        assert (tmp_path / "lab" / "lab.json").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()


def test_sftrenew_lab_serve_rejects_a_bad_spec(tmp_path: Path) -> None:
    spec = tmp_path / "lab.yaml"
    spec.write_text("ftds: 2\nftd_count: 3\n")
    sftrenew = Path(sys.executable).parent / "sftrenew"
    result = subprocess.run(
        [str(sftrenew), "lab", "serve", "--spec", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{spec}: ftd_count: Extra inputs are not permitted" in result.stderr
