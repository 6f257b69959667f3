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


def test_demo_renews_the_lab_pair_watched_in_flower(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFTRENEW_")}
    command = [
        str(Path(sys.executable).parent / "sftrenew"),
        "demo",
        "--exit",
        "--ftds",
        "4",
        "--dir",
        str(directory),
    ]
    demo = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    assert re.search(r"Renewal \S+: partial", out)
    assert "fmc-primary: 4/5 peers verified" in out and "FAILED ftd-004: DeviceUnreachableError" in out
    assert "via jump-1: ftd-003" in out and "sftrenew retry" in out
    assert (directory / "env.sh").stat().st_mode & 0o777 == 0o600
    assert password not in (directory / "worker.log").read_text()
    assert not _processes_mentioning(str(directory)), "the demo left processes behind"
    assert not _flower_answers(url, password)
