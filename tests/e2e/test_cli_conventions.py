"""Command-line conventions against the lab: `--version`, `--inventory PATH` in place of the variable, and
an operator's command that shows sftrenew's lines only (the libraries' with `--debug`)."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata

import pytest

from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import SFTRENEW, RenewalEnv

pytestmark = pytest.mark.e2e


def run(env: RenewalEnv, *args: str, inventory_variable: bool = True) -> subprocess.CompletedProcess[str]:
    environ = env.env_for("command")
    if not inventory_variable:
        del environ["SFTRENEW_INVENTORY"]
    return subprocess.run(
        [SFTRENEW, *args], env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def test_version_inventory_flag_and_quiet_libraries(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env({"ftds": 4, "scenarios": "mixed,expired"})  # ftd-004: no route
    version = run(env, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"sftrenew {metadata.version('sftrenew')}"

    inventory = env.env["SFTRENEW_INVENTORY"]
    unset = run(env, "plan", "--pair", "lab", inventory_variable=False)
    assert unset.returncode == 2 and "SFTRENEW_INVENTORY" in unset.stderr
    flagged = run(env, "plan", "--pair", "lab", "--inventory", inventory, inventory_variable=False)
    assert flagged.returncode == 1, flagged.stderr  # the plan ran: ftd-004 would be stranded
    assert "ftd-004: stranded" in flagged.stdout
    # paramiko logs the refused connection to ftd-004 at ERROR: not the operator's business by default.
    assert "paramiko" not in flagged.stderr, flagged.stderr
    debug = run(env, "--debug", "plan", "--pair", "lab", "--inventory", inventory, inventory_variable=False)
    assert "paramiko" in debug.stderr

    as_json = run(env, "plan", "--pair", "lab", "--json")
    assert as_json.returncode == 1, as_json.stderr
    plan = json.loads(as_json.stdout)
    assert plan["schema"] == "sftrenew.plan/1" and plan["pair"] == "lab" and plan["stranded"] == ["ftd-004"]
    primary = plan["fmcs"][0]
    assert (primary["fmc"], primary["role"]) == ("fmc-primary", "primary") and primary["ca_days_left"] < 0
    peers = {peer["name"]: peer for peer in primary["peers"]}
    assert peers["ftd-004"]["action"] == "stranded" and peers["ftd-004"]["routes"] == []
    assert peers["ftd-003"]["action"] == "push" and peers["ftd-003"]["routes"] == ["via jump-1"]
    assert peers["ftd-001"]["action"] == "live_push" and peers["ftd-001"]["tunnel"] == "up"

    missing = run(env, "check", "--inventory", inventory + ".typo", inventory_variable=False)
    assert missing.returncode == 3 and ".typo" in missing.stderr  # check's bad input is UNKNOWN
