"""Restoring one device's files over real SSH (issue 13, item 5): the push's copies, checked against what the
push recorded before its first write, put back atomically, sftunnel restarted; refused, with nothing changed,
when a copy is missing or was changed; and a restore whose connection is cut anywhere leaves each file whole,
for a second restore to finish."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.devices.session import DIRECT, TEMP_GLOB
from pipeline.errors import BackupMismatchError, DeviceUnreachableError
from pipeline.material import FilesBefore
from pipeline.steps.backup import backup
from pipeline.steps.push import FactsInMemory, PushAction, push_with_routes
from pipeline.steps.regenerate import regenerate
from pipeline.steps.restore import TEMP_SUFFIX, restore_files, restore_once
from sftlab.fleet.keys import KeyPool
from sftlab.fleet.runner import LabRunner
from sftlab.fleet.spec import build_spec
from tests.lab.fixtures import MakeLab, RunningLab
from tests.lab.test_fabric_session import lab_bytes
from tests.lab.test_history import wait_until_sessions_end
from tests.lab.test_steps import factory_for

pytestmark = pytest.mark.lab

NAMES = ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")
#: ftd-001 with its tunnel down, so generate_certs.pl cannot push it and `renewed`'s push writes it.
FTD_DOWN = {"ftds": 1, "devices": {"ftd-001": {"tunnel": "down"}}}


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
    lab = make_lab(**FTD_DOWN)
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
    lab = make_lab(**FTD_DOWN)
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


# ------------------------------------------------ the connection cut part-way through a restore


@pytest.fixture(scope="module")
def restore_cost(tmp_path_factory: pytest.TempPathFactory, key_pool: KeyPool) -> Iterator[int]:
    """The channel bytes a whole restore costs once its session is open, counted in an uncut first pass on a
    lab of its own: every restore of `renewed`'s state costs the same, give or take a prompt (its commands,
    names, digests and prompts have the same lengths on every such lab; see `RESTORE_CUTS`)."""
    directory = tmp_path_factory.mktemp("restore-cost")
    runner = LabRunner(build_spec(FTD_DOWN, source="test"), directory, keys=key_pool)
    lab = RunningLab(runner, runner.start(), directory)
    try:
        before, old, _ = renewed(lab)
        wait_until_sessions_end(lab, "ftd-001")  # the push's session: `lab_bytes` reads the one left
        session = factory_for(lab).open("ftd-001", DIRECT)
        try:
            start = lab_bytes(lab, "ftd-001")
            restore_files(session, before)
            cost = lab_bytes(lab, "ftd-001") - start
        finally:
            session.close()
        assert files_of(lab, lab.device("fmc-primary")["uuid"]) == old
        yield cost
    finally:
        runner.stop()


def part_of(k: int, n: int) -> Callable[[int], int]:
    """A cut `k/n` of the way through (a function, so each cut keeps its own `k`)."""
    return lambda cost: cost * k // n


# Where the cut lands in the restore's bytes, and what it must leave in the targets where only one answer is
# right (None: each file, on its own, the renewal's or its copy). The first byte: the copies' digests are
# being asked for, nothing was renamed. Ten points at every eleventh of the cost, which today fall in each of
# the five commands (the copies' digests, the copy to the temporary files, the renames (one cut lands
# between two of them), the restart, the read back). 150 bytes before the end: in the last read back's last
# lines, after the renames. A count read as a session opens or a command returns may miss a prompt still on
# its way (26 bytes at root's home, 65 in the peer's folder), so the calibration may be up to 91 bytes over:
# a cut much closer to the end might land after the restore returned.
RESTORE_CUTS: dict[str, tuple[Callable[[int], int], str | None]] = {
    "first-byte": (lambda cost: 1, "new"),
    **{f"{k}-11ths": (part_of(k, 11), None) for k in range(1, 11)},
    "end-150": (lambda cost: cost - 150, "old"),
}


@pytest.mark.parametrize(("cut", "left"), RESTORE_CUTS.values(), ids=RESTORE_CUTS.keys())
def test_a_restore_cut_part_way_leaves_each_file_whole_and_a_second_restore_finishes(
    make_lab: MakeLab, restore_cost: int, cut: Callable[[int], int], left: str | None
) -> None:
    """The device's connection is cut after `cut(restore_cost)` bytes of the restore: the restore raises
    DeviceUnreachableError; each target is, byte for byte, the renewal's file or its copy; the copies are
    intact. Then, uncut, the same restore finishes: every target its copy, no temporary file left, sftunnel
    restarted once more. Throughout, a reader that opened the targets before the restore still reads the
    renewal's files, whole: a target is renamed over, never rewritten in place. (A restore that rewrote the
    targets in place would leave a partial file only when a cut lands inside a device-side `cp` of a 2 KB
    file, which is rare: the contents alone seldom catch it, the readers always do.)"""
    lab = make_lab(**FTD_DOWN)
    fmc_uuid = lab.device("fmc-primary")["uuid"]
    before, old, new = renewed(lab)
    folder = folder_of(lab, fmc_uuid)
    with contextlib.ExitStack() as stack:
        readers = {name: stack.enter_context((folder / name).open("rb")) for name in NAMES}
        cut_restore(lab, before, cut(restore_cost))
        held = files_of(lab, fmc_uuid)
        for name in NAMES:
            assert held[name] in (new[name], old[name]), f"{name} is neither the renewal's file nor its copy"
            assert (folder / f"{name}{before.suffix}").read_bytes() == old[name]
        if left is not None:
            assert held == {"new": new, "old": old}[left]
        assert {name: os.pread(f.fileno(), 1 << 16, 0) for name, f in readers.items()} == new

        restarts = lab.restarts("ftd-001")
        restore_once(factory_for(lab).guarded(), "ftd-001", before)
        assert files_of(lab, fmc_uuid) == old
        assert {name: os.pread(f.fileno(), 1 << 16, 0) for name, f in readers.items()} == new
    assert not list(folder.glob(TEMP_GLOB))
    assert all((folder / name).stat().st_mode & 0o777 == 0o644 for name in NAMES)
    assert lab.restarts("ftd-001") == restarts + 1


def cut_restore(lab: RunningLab, before: FilesBefore, after: int) -> None:
    """Restore ftd-001 over a session whose connection the lab cuts `after` bytes into the restore; return
    once the cut session's shells are gone (what they did is on disk) and the knob is cleared."""
    wait_until_sessions_end(lab, "ftd-001")  # the push's session: `lab_bytes` reads the one left
    session = factory_for(lab).open("ftd-001", DIRECT)
    lab.set_knobs("ftd-001", drop_after_bytes=lab_bytes(lab, "ftd-001") + after)
    try:
        with pytest.raises(DeviceUnreachableError, match="connection lost"):
            restore_files(session, before)
    finally:
        session.close()
    wait_until_sessions_end(lab, "ftd-001")
    lab.set_knobs("ftd-001", drop_after_bytes=None)
