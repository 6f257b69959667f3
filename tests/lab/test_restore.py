"""Restoring one device's files over real SSH (issue 13, item 5): the push's copies, checked against what the
push recorded before its first write, put back atomically, sftunnel restarted; refused, with nothing changed,
when a copy is missing or was changed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.devices.session import DIRECT
from pipeline.errors import BackupMismatchError
from pipeline.material import FilesBefore
from pipeline.steps.backup import backup
from pipeline.steps.push import FactsInMemory, PushAction, push_with_routes
from pipeline.steps.regenerate import regenerate
from pipeline.steps.restore import TEMP_SUFFIX, restore_once
from tests.lab.fixtures import MakeLab, RunningLab
from tests.lab.test_steps import factory_for

pytestmark = pytest.mark.lab

NAMES = ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")


def renewed(lab: RunningLab) -> tuple[FilesBefore, dict[str, bytes], dict[str, bytes]]:
    """fmc-primary's CA regenerated and ftd-001 written by a push (its tunnel is down, so generate_certs.pl
    could not push it): what the push recorded before writing, the files before, the files after."""
    factory = factory_for(lab)
    fmc_uuid = lab.device("fmc-primary")["uuid"]
    session = factory.open("fmc-primary", DIRECT)
    try:
        saved = backup(session)
        regen = regenerate(session, fmc_uuid=fmc_uuid, started_from_sha256=saved.ca_sha256)
    finally:
        session.close()
    old = files_of(lab, fmc_uuid)
    facts = FactsInMemory()
    material = regen.peer(lab.device("ftd-001")["uuid"])
    done = push_with_routes(
        factory,
        "ftd-001",
        fmc_uuid=fmc_uuid,
        material=material,
        backup_stamp_utc=datetime.now(UTC),
        facts=facts,
    )
    assert done.ok and done.action is PushAction.WRITE, done
    assert facts.before is not None and facts.before.suffix == done.backup_suffix
    new = files_of(lab, fmc_uuid)
    assert new == material.files() != old
    return facts.before, old, new


def folder_of(lab: RunningLab, fmc_uuid: str) -> Path:
    return lab.file("ftd-001", f"/ngfw/var/sf/peers/{fmc_uuid}")


def files_of(lab: RunningLab, fmc_uuid: str) -> dict[str, bytes]:
    return {name: (folder_of(lab, fmc_uuid) / name).read_bytes() for name in NAMES}


def test_restore_puts_back_the_files_held_before_the_renewal(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"tunnel": "down"}})
    fmc_uuid = lab.device("fmc-primary")["uuid"]
    before, old, _ = renewed(lab)
    restarts = lab.restarts("ftd-001")
    outcome = restore_once(factory_for(lab).guarded(), "ftd-001", before)
    assert files_of(lab, fmc_uuid) == old
    assert lab.restarts("ftd-001") == restarts + 1
    assert dict(outcome.restored) == {n: d for n, d in before.by_name().items() if d is not None}
    folder = folder_of(lab, fmc_uuid)
    assert not list(folder.glob(f".*{TEMP_SUFFIX}"))  # no temporary file left
    for name in NAMES:
        path = folder / name
        assert path.stat().st_mode & 0o777 == 0o644
        assert (folder / f"{name}{before.suffix}").read_bytes() == old[name]  # the copies stay
    # The key's content never crossed into a command: nothing of it is in the outcome or its summary.
    assert old["sftunnel-key.pem"].decode() not in repr(outcome) + outcome.summary()
    # A second run finds the same copies and puts back the same files (a restore cut half-way is finished).
    restore_once(factory_for(lab).guarded(), "ftd-001", before)
    assert files_of(lab, fmc_uuid) == old


@pytest.mark.parametrize("tamper", ["changed", "missing"])
def test_restore_refuses_a_copy_that_is_not_what_the_record_says(make_lab: MakeLab, tamper: str) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"tunnel": "down"}})
    fmc_uuid = lab.device("fmc-primary")["uuid"]
    before, _, new = renewed(lab)
    copy = folder_of(lab, fmc_uuid) / f"sftunnel-cert.pem{before.suffix}"
    if tamper == "changed":
        copy.write_bytes(copy.read_bytes() + b"\n")
    else:
        copy.unlink()
    restarts = lab.restarts("ftd-001")
    with pytest.raises(BackupMismatchError) as refused:
        restore_once(factory_for(lab).guarded(), "ftd-001", before)
    said = str(refused.value)
    assert f"sftunnel-cert.pem{before.suffix}" in said and "nothing was changed" in said
    assert ("is missing" in said) == (tamper == "missing")
    assert files_of(lab, fmc_uuid) == new  # the device keeps the renewal's files
    assert lab.restarts("ftd-001") == restarts
