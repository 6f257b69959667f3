"""What the lab counts per device (sessions, command round trips) and its latency as a transit delay.

Timing assertions here have wide margins on purpose (a loaded machine may be slow, never fast): a burst of
lines must cost far less than one latency per line, and a line that waited for the answer to the one before it
can never arrive sooner than one latency.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sftlab.cli import USAGE_FILE
from sftlab.fleet.running import Fleet
from tests.lab.client import ROOT_PROMPT, Target, open_client
from tests.lab.fixtures import MakeLab

pytestmark = pytest.mark.lab

LATENCY_MS = 200


def test_sessions_and_round_trips_are_counted_per_device(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=2)
    with lab.root_shell("ftd-001") as shell:  # expert, sudo su, the password: three round trips
        assert lab.round_trips("ftd-001") == 3
        shell.run("echo one")
        shell.run("echo two")
        assert lab.round_trips("ftd-001") == 5
        # Typed ahead in pieces: the echo of the first piece is the terminal's, not an answer.
        shell.channel.sendall(b"echo th")
        shell.channel.sendall(b"ree\n")
        shell.expect(re.compile(r"^three\n", re.M))
        shell.expect(ROOT_PROMPT)
        assert lab.round_trips("ftd-001") == 6
        # Three lines in one write: one round trip.
        shell.channel.sendall(b"echo a\necho b\necho c\n")
        shell.expect(re.compile(r"(?:^|# )c\n", re.M))
        shell.expect(ROOT_PROMPT)
        assert lab.round_trips("ftd-001") == 7
    client = open_client(lab.target("ftd-001"), lab.known_hosts)
    try:
        _, stdout, _ = client.exec_command("show version")
        assert "ftd-001" in stdout.read().decode()
    finally:
        client.close()
    assert lab.sessions_opened("ftd-001") == 2
    assert lab.round_trips("ftd-001") == 8
    assert (lab.sessions_opened("ftd-002"), lab.round_trips("ftd-002")) == (0, 0)
    usage = lab.runner.call(_usage_of(lab.fleet, "ftd-001"))
    assert usage["logins"] == 2
    assert [s["kind"] for s in usage["sessions"]] == ["interactive", "exec"]
    assert [s["round_trips"] for s in usage["sessions"]] == [7, 1]


async def _usage_of(fleet: Fleet, name: str) -> dict[str, Any]:
    return fleet.usage()[name].as_json()


def test_lines_sent_together_cost_one_latency(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"latency_ms": LATENCY_MS}})
    with lab.root_shell("ftd-001") as shell:
        body = "".join(f"line {i}\n" for i in range(18))
        started = time.monotonic()
        # 20 lines in one write; the output is upper case, so the echo of the typed lines never matches.
        shell.channel.sendall(f"tr a-z A-Z <<'END'\n{body}END\n".encode())
        shell.expect(re.compile(r"LINE 17\n"), timeout=30)
        shell.expect(ROOT_PROMPT, timeout=30)
        elapsed = time.monotonic() - started
    # One latency per line would be 20 x 200 ms = 4 s; as a transit delay it is about one.
    assert elapsed >= LATENCY_MS / 1000 * 0.9
    assert elapsed < 5 * LATENCY_MS / 1000, f"20 lines sent together took {elapsed:.2f} s"


def test_a_line_that_waits_for_the_answer_pays_the_latency_again(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"latency_ms": LATENCY_MS}})
    with lab.root_shell("ftd-001") as shell:
        for word in ("first", "second", "third"):
            started = time.monotonic()
            assert shell.run(f"echo {word}") == f"{word}\n"
            assert time.monotonic() - started >= LATENCY_MS / 1000 * 0.95


def test_an_exec_request_pays_the_latency(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"latency_ms": LATENCY_MS}})
    client = open_client(lab.target("ftd-001"), lab.known_hosts)
    try:
        started = time.monotonic()
        _, stdout, _ = client.exec_command("show version")
        assert "ftd-001" in stdout.read().decode()
        assert time.monotonic() - started >= LATENCY_MS / 1000 * 0.95
    finally:
        client.close()


def test_lab_serve_writes_usage_on_sigusr1_and_at_stop(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    process = subprocess.Popen(
        [sys.executable, "-m", "sftlab", "serve", "--ftds", "1", "--dir", str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().decode()
        assert ready.startswith("lab ready:"), ready
        secrets = (directory / "secrets.yaml").read_text()
        password = re.search(r"fleet-admin: (\S+)", secrets)
        assert password is not None
        lab = json.loads((directory / "lab.json").read_text())
        ftd = next(d for d in lab["devices"] if d["name"] == "ftd-001")
        client = open_client(
            Target(ftd["host"], ftd["port"], "admin", password.group(1)), directory / "known_hosts"
        )
        _, stdout, _ = client.exec_command("show version")
        stdout.read()
        client.close()
        usage_file = directory / USAGE_FILE
        os.kill(process.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 20
        while not usage_file.exists():
            assert time.monotonic() < deadline, "usage.json was not written after SIGUSR1"
            time.sleep(0.05)
        devices = json.loads(usage_file.read_text())["devices"]
        assert devices["ftd-001"]["sessions_opened"] == 1
        assert devices["ftd-001"]["round_trips"] == 1
        assert devices["fmc-primary"]["sessions_opened"] == 0
        usage_file.unlink()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert json.loads((directory / USAGE_FILE).read_text())["devices"]["ftd-001"]["logins"] == 1
