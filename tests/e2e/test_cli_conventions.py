"""Command-line conventions against the lab: `--version`, `--inventory PATH` in place of the variable, and
an operator's command that shows sftrenew's lines only (the libraries' with `--debug`)."""

from __future__ import annotations

import json
import re
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


def test_json_outputs_and_a_piped_watch_that_never_goes_backwards(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env({"ftds": 3, "scenarios": "expired"})
    env.start_worker()
    renewal_id = env.enqueue()
    watched = subprocess.run(  # piped: a plain line per change, the total from the plan at enqueue
        [SFTRENEW, "status", renewal_id, "--watch", "--interval", "0.2"],
        env=env.env_for("command"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert watched.returncode == 0, watched.stderr
    assert "\x1b[" not in watched.stdout
    progress = [line.split() for line in watched.stdout.splitlines() if re.fullmatch(r"\d+/\d+ \w+", line)]
    counts = [tuple(map(int, words[0].split("/"))) for words in progress]
    assert counts and len({total for _, total in counts}) == 1, counts  # 2 FMCs x (4 steps + 4 peers)
    assert [done for done, _ in counts] == sorted(done for done, _ in counts)
    assert progress[-1][1] == "succeeded" and counts[-1][0] == counts[-1][1] == 16
    assert watched.stdout.count(f"renewal {renewal_id}") == 1  # the table once, at the end

    status = json.loads(run(env, "status", renewal_id, "--json").stdout)
    assert status["schema"] == "sftrenew.status/1" and status["renewal"]["state"] == "succeeded"
    assert status["progress"] == {"done": 16, "total": 16}
    primary = status["fmcs"][0]
    assert primary["steps"] == dict.fromkeys(("backup", "validate", "regenerate", "verify"), "succeeded")
    assert {d["device"]: d["verdict"] for d in primary["devices"]} == {
        "fmc-secondary": "verified",
        "ftd-001": "verified",
        "ftd-002": "verified",
        "ftd-003": "verified",
    }
    history = json.loads(run(env, "history", "--json").stdout)
    assert history["schema"] == "sftrenew.history/1"
    assert [(r["id"], r["state"]) for r in history["renewals"]] == [(renewal_id, "succeeded")]
    nowhere = run(env, "history", "--pair", "nowhere")
    assert nowhere.returncode == 2 and "--pair nowhere" in nowhere.stderr
    assert run(env, "history", "--pair", "lab").returncode == 0
