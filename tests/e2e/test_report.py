"""The evidence pack of a lab renewal: `sftrenew report` in its three forms, `--check`, and the HTML seen.

A renewal of the lab pair (one FTD unreachable, accepted as stranded by name) runs on a real worker; then:
- the JSON pack parses and says what the record says: both FMCs' CA before and after, the backups, each
  device's attempts and verdict, the enqueue and accept-stranded with who;
- `--check` says it is intact, and fails (exit 1) on a copy with one byte changed;
- the HTML page is opened in Chromium and looked at as a picture (a screenshot, kept as
  docs/evidence-pack.png with SFTRENEW_UPDATE_SCREENSHOT=1), and prints to more than one page;
- no password of the lab, no artifact key and no private key is in any form.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from pipeline import store
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import RenewalEnv

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
LAB = {"ftds": 4, "scenarios": "mixed,expired"}
DEVICES = ("ftd-001", "ftd-002", "ftd-003", "ftd-004")


def _check_against_the_record(env: RenewalEnv, renewal_id: str, content: dict[str, Any]) -> None:
    with store.open_session(env.engine) as db:
        fmcs = {f.fmc: f for f in store.fmcs_of(session=db, renewal_id=renewal_id)}
        backups = store.artifacts_of(session=db, renewal_id=renewal_id, kind="backup")
    steps = env.steps(renewal_id)
    assert content["renewal"]["id"] == renewal_id and content["renewal"]["pair"] == "lab"
    assert content["renewal"]["state"] == "partial"
    assert {f["name"]: f["role"] for f in content["fmcs"]} == {
        "fmc-primary": "primary",
        "fmc-secondary": "secondary",
    }
    for fmc in content["fmcs"]:
        row = fmcs[fmc["name"]]
        before, after = fmc["ca_before"], fmc["ca_after"]
        assert before["sha256"] == row.ca_before_sha256 and after["sha256"] == row.ca_after_sha256
        assert before["sha256"] != after["sha256"] and before["serial"] and after["not_after_utc"]
        assert after["not_after_utc"] > before["not_after_utc"]  # the expired CA was renewed
        assert fmc["notes"] == []
        assert sorted((b["path"], b["sha256"]) for b in fmc["backup"]) == sorted(
            (a.path, a.sha256) for a in backups if a.fmc == fmc["name"]
        )
        assert fmc["validation_before"]["peers"] and fmc["validation_after"]
        devices = {d["name"]: d for d in fmc["devices"]}
        assert set(DEVICES) <= set(devices)
        for name, device in devices.items():
            recorded = sorted(
                (s.step, s.attempt, s.state, s.route)
                for s in steps
                if s.fmc == fmc["name"] and s.device == name
            )
            assert sorted((a["step"], a["attempt"], a["state"], a["route"]) for a in device["attempts"]) == (
                recorded
            )
        # The unreachable device, accepted as stranded: never verified, nothing written to it.
        stranded = devices["ftd-004"]
        assert stranded["verdict"] != "verified" and stranded["write_started_at_utc"] is None
        verified = [d for d in devices.values() if d["verdict"] == "verified"]
        assert verified and all(len(d["files"]) == 3 for d in verified)
    assert [(e["action"], e["who"], e["device"]) for e in content["events"]] == [
        ("enqueue", "alice", None),
        ("accept-stranded", "alice", "ftd-004"),
    ]


def _one_byte_changed(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    at = data.index(b'"pair": "lab"') + len(b'"pair": "l')
    data[at] = ord("x")  # "lab" -> "lxb"
    target.write_bytes(bytes(data))
    return target


def test_the_evidence_pack_of_a_lab_renewal(
    make_sqlite_env: MakeEnv, browser: Browser, tmp_path: Path
) -> None:
    env = make_sqlite_env(LAB)
    env.start_worker()
    renewal_id = env.enqueue("--accept-stranded", "ftd-004", "--by", "alice", force=False)
    assert env.wait_finished(renewal_id).state == "partial"

    packs = {fmt: tmp_path / f"pack.{fmt}" for fmt in ("json", "html", "md")}
    for fmt, path in packs.items():
        made = env.sftrenew("report", renewal_id, "--format", fmt, "-o", str(path))
        assert made.returncode == 0, made.stderr
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    printed = env.sftrenew("report", renewal_id)  # JSON, the default, on stdout
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["content"]["renewal"]["id"] == renewal_id

    pack = json.loads(packs["json"].read_bytes())
    _check_against_the_record(env, renewal_id, pack["content"])

    intact = env.sftrenew("report", "--check", str(packs["json"]))
    assert intact.returncode == 0 and "intact" in intact.stdout, intact.stderr
    changed = env.sftrenew("report", "--check", str(_one_byte_changed(packs["json"], tmp_path / "bad.json")))
    assert changed.returncode == 1 and "NOT intact: digest mismatch" in changed.stderr, changed.stderr
    unknown = env.sftrenew("report", "no-such-renewal")
    assert unknown.returncode == 2 and "no renewal no-such-renewal" in unknown.stderr
    missing = env.sftrenew("report", "--check", str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr

    texts = {fmt: path.read_text() for fmt, path in packs.items()}
    for text in texts.values():
        for secret in [*env.lab.secrets.values(), env.artifact_key]:
            assert secret not in text
        assert "PRIVATE KEY" not in text
    assert f"`{renewal_id}`" in texts["md"] and "| ftd-004 |" in texts["md"]

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(packs["html"].as_uri())
    body = page.inner_text("body")
    for name in ("lab", renewal_id, "fmc-primary", "fmc-secondary", *DEVICES, "accept-stranded", "alice"):
        assert name in body, name
    page.screenshot(path=str(tmp_path / "evidence-pack-whole.png"), full_page=True)
    # The picture for the docs: the summary, the events and the first FMC's CA and devices.
    shot = tmp_path / "evidence-pack.png"
    page.screenshot(path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1500})
    assert shot.stat().st_size > 10_000
    if os.environ.get("SFTRENEW_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, DOCS / "evidence-pack.png")
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4", print_background=True)
    # The summary, then each FMC from a new page: at least three pages.
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 3
    page.close()
