"""The README's first command, for real: `sftrenew demo` renews the lab pair on embedded defaults.

It runs the demo command in its own process (embedded Redis, SQLite, the lab, a worker, Flower), reaches
Flower while the renewal runs, and checks the summary and that every process the demo started is gone.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.services import wait_until

pytestmark = pytest.mark.e2e


def _flower_answers(url: str, password: str) -> bool:
    request = urllib.request.Request(url + "/api/workers")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"sftrenew:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


def _run_demo(directory: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFTRENEW_")}
    sftrenew = str(Path(sys.executable).parent / "sftrenew")
    command = [sftrenew, "demo", "--exit", "--dir", str(directory), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _key_leaks(lab_dir: Path) -> list[str]:
    """Where any private key now on a lab device shows in any shell history file, as PEM lines or as any
    stretch of the base64 of the whole file (how an upload would type it), at any alignment."""
    keys = [p.read_bytes() for p in lab_dir.rglob("*.pem") if b"PRIVATE KEY" in p.read_bytes()]
    assert keys, f"no private key found under {lab_dir}"
    histories = list(lab_dir.rglob(".bash_history"))
    assert histories, "no shell history was kept: the lab must record it as bash does"
    leaks = []
    for history in histories:
        text = history.read_text(errors="replace")
        runs = re.findall(r"[A-Za-z0-9+/=]{40,}", text)
        for key in keys:
            encoded = base64.b64encode(key).decode()
            pem_lines = [line for line in key.decode().splitlines() if len(line) >= 40]
            if any(line in text for line in pem_lines) or any(run in encoded for run in runs):
                leaks.append(str(history))
    return leaks


def test_demo_with_a_spec_of_legacy_cas_and_a_lost_restart(tmp_path: Path) -> None:
    """The lab shape of issue "Real devices keep what the lab throws away": v1/serial-0 CAs on both FMCs,
    one FTD whose first sftunnel restart drops the connection, another with its tunnel down."""
    spec = tmp_path / "lab.yaml"
    spec.write_text(
        "ftds: 3\n"
        "scenarios: expired\n"
        "devices:\n"
        "  fmc-primary: {ca_format: v1}\n"
        "  fmc-secondary: {ca_format: v1}\n"
        "  ftd-001: {tunnel: down, restart: drop_once}\n"
        "  ftd-002: {tunnel: down}\n"
    )
    directory = tmp_path / "demo"
    demo = _run_demo(directory, "--spec", str(spec))
    out, _ = demo.communicate(timeout=600)
    assert demo.returncode == 0, out
    assert re.search(r"Renewal \S+: succeeded", out), out
    for fmc in ("fmc-primary", "fmc-secondary"):
        assert f"{fmc}: 4/4 peers verified" in out, out
    assert "Warning" not in out and "warning" not in out, out
    assert not _key_leaks(directory / "lab")


def test_demo_refuses_a_bad_spec_before_touching_its_folder(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    (directory / "keep").write_text("the previous demo's files")
    spec = tmp_path / "lab.yaml"
    spec.write_text("devices:\n  ftd-001: {ca_format: v1}\n")
    demo = _run_demo(directory, "--spec", str(spec))
    out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 2
    assert out.startswith("sftrenew demo: ") and "ca_format" in out and "Traceback" not in out
    assert (directory / "keep").exists()


def test_demo_renews_the_lab_pair_watched_in_flower(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    demo = _run_demo(directory, "--ftds", "4")
    assert demo.stdout is not None
    head = [demo.stdout.readline() for _ in range(3)]
    match = re.search(
        r"Flower: (http://127\.0\.0\.1:\d+)/tasks  user sftrenew  password (\S+)", "".join(head)
    )
    assert match, head
    url, password = match.groups()
    wait_until(lambda: _flower_answers(url, password), timeout=120, what="Flower answering during the demo")
    out, _ = demo.communicate(timeout=600)
    assert demo.returncode == 0, out
    # Both gates: the FTD with no route accepted by name, the renewal held, then approved as demo.
    assert "the demo accepts losing it: --accept-stranded ftd-004" in out, out
    assert "demo: the renewal awaits approval" in out and "approved by demo" in out, out
    assert re.search(r"Renewal \S+: partial", out)
    assert "fmc-primary: 4/5 peers verified" in out and "FAILED ftd-004: DeviceUnreachableError" in out
    assert "via jump-1: ftd-003" in out and "sftrenew retry" in out
    assert (directory / "env.sh").stat().st_mode & 0o777 == 0o600
    assert password not in (directory / "worker.log").read_text()
    assert not _processes_mentioning(str(directory)), "the demo left processes behind"
    assert not _flower_answers(url, password)
