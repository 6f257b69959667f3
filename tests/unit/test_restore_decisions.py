"""Restoring one device: what the record keeps of the files before the renewal, and the pure decisions
(`record_refusal`, `decide_restore`) that refuse a restore before anything changes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.material import FilesBefore
from pipeline.report import DeviceLine, restored_lines
from pipeline.steps.push import backup_suffix
from pipeline.steps.restore import RestoreAction, decide_restore, record_refusal
from pipeline.store import RenewalEvent, StepRun

FOLDER = "/var/sf/peers/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SUFFIX = backup_suffix(datetime(2026, 12, 3, 10, 11, 12, tzinfo=UTC))
FILES = {"cacert.pem": b"ca", "sftunnel-cert.pem": b"cert", "sftunnel-key.pem": b"key"}
BEFORE = FilesBefore.of(FOLDER, SUFFIX, FILES)
COPIES = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}


def test_files_before_keeps_each_files_digest_and_names_its_copy() -> None:
    assert SUFFIX == ".sftrenew-20261203T101112Z.bak"
    assert BEFORE.by_name() == COPIES
    assert list(BEFORE.by_name()) == ["cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem"]
    assert BEFORE.backup_of("sftunnel-key.pem") == f"{FOLDER}/sftunnel-key.pem{SUFFIX}"
    assert "key" not in repr(BEFORE).replace("key_sha256", "")  # digests only, never the bytes


def test_a_missing_file_is_recorded_as_none() -> None:
    before = FilesBefore.of(FOLDER, SUFFIX, {"cacert.pem": b"ca"})
    assert (before.cert_sha256, before.key_sha256) == (None, None)


def test_copies_that_match_the_record_are_restored() -> None:
    assert decide_restore(BEFORE, COPIES).action is RestoreAction.RESTORE


@pytest.mark.parametrize(
    ("copies", "said"),
    [
        ({}, ["cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem"]),
        ({**COPIES, "sftunnel-key.pem": None}, [f"sftunnel-key.pem{SUFFIX} is missing"]),
        ({k: v for k, v in COPIES.items() if k != "cacert.pem"}, [f"cacert.pem{SUFFIX} is missing"]),
        ({**COPIES, "sftunnel-cert.pem": "0" * 64}, [f"sftunnel-cert.pem{SUFFIX} has SHA-256 {'0' * 16}"]),
    ],
)
def test_a_missing_or_changed_copy_refuses_naming_it(copies: dict[str, str | None], said: list[str]) -> None:
    decision = decide_restore(BEFORE, copies)
    assert decision.action is RestoreAction.REFUSE
    for text in said:
        assert text in decision.reason


def test_a_file_that_was_not_there_before_refuses() -> None:
    before = FilesBefore.of(FOLDER, SUFFIX, {k: v for k, v in FILES.items() if k != "sftunnel-key.pem"})
    decision = decide_restore(before, COPIES)
    assert decision.action is RestoreAction.REFUSE
    assert "sftunnel-key.pem was not there before the renewal" in decision.reason


def test_the_record_refuses_a_device_never_written_or_recorded_by_an_older_sftrenew() -> None:
    never = record_refusal("ftd-001", "fmc-primary", written=False, recorded=None)
    assert never is not None and "never wrote ftd-001's files for fmc-primary" in never
    old = record_refusal("ftd-001", "fmc-primary", written=True, recorded=None)
    assert old is not None and "older sftrenew" in old and "by hand" in old
    assert record_refusal("ftd-001", "fmc-primary", written=True, recorded=BEFORE) is None


T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _step(step: str, at: datetime) -> StepRun:
    return StepRun(
        renewal_id="r", fmc="fmc-primary", device="ftd-001", step=step, attempt=1, started_at_utc=at
    )


def _restore(at: datetime) -> RenewalEvent:
    return RenewalEvent(
        renewal_id="r", at_utc=at, action="restore", who="alice", fmc="fmc-primary", device="ftd-001"
    )


def test_status_shows_a_restored_device_until_a_push_or_verify_touches_it_again() -> None:
    line = DeviceLine("ftd-001", "succeeded", "direct", 1, "verified", "")
    steps = [_step("push", T0), _step("verify", T0 + timedelta(minutes=1))]
    restored = restored_lines([line], steps, [_restore(T0 + timedelta(minutes=5))])
    assert (restored[0].verdict, restored[0].note) == ("restored", "restored by alice")
    later = [*steps, _step("push", T0 + timedelta(minutes=9))]
    assert restored_lines([line], later, [_restore(T0 + timedelta(minutes=5))]) == [line]
    assert restored_lines([line], steps, []) == [line]
