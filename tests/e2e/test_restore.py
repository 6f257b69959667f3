"""Restoring one device after a renewal (issue 13, item 5). Real worker and Redis, SQLite, the lab.

A renewal writes ftd-001's files (its tunnel is down, so generate_certs.pl cannot push them); then
`sftrenew restore`:
- refuses, exit 1, naming the device, a device the renewal does not know and one it never wrote;
- refuses, exit 1, when the copy on the device was changed since the push kept it; the device keeps its files;
- puts back the three files ftd-001 held for fmc-primary before the renewal (its files for fmc-secondary stay
  new), records who did it, and `sftrenew status` shows the device `restored`;
and no key material reaches a shell history on the way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import store
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import RenewalEnv
from tests.e2e.test_renewal import _assert_no_secret_in_shell_history

pytestmark = pytest.mark.e2e

LAB = {"ftds": 2, "scenarios": "expired", "devices": {"ftd-001": {"tunnel": "down"}}}
NAMES = ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")


def folder(env: RenewalEnv, device: str, fmc: str) -> Path:
    return env.lab.file(device, f"/ngfw/var/sf/peers/{env.lab.device(fmc)['uuid']}")


def files(env: RenewalEnv, device: str, fmc: str) -> dict[str, bytes]:
    return {name: (folder(env, device, fmc) / name).read_bytes() for name in NAMES}


def test_restore_puts_one_device_back_and_refuses_what_it_cannot_trust(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(LAB)
    env.start_worker()
    before = {fmc: files(env, "ftd-001", fmc) for fmc in ("fmc-primary", "fmc-secondary")}
    renewal_id = env.enqueue()
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    renewed = {fmc: files(env, "ftd-001", fmc) for fmc in before}
    assert all(renewed[fmc] != before[fmc] for fmc in before)

    def restore(device: str, fmc: str = "fmc-primary") -> tuple[int, str]:
        done = env.sftrenew("restore", renewal_id, "--device", device, "--fmc", fmc, "--by", "dave")
        return done.returncode, done.stdout + done.stderr

    code, said = restore("ftd-999")
    assert code == 2 and "no device 'ftd-999'" in said and "ftd-001" in said, said  # names nothing: bad input
    code, said = restore("ftd-001", "fmc-nowhere")
    assert code == 2 and "no FMC 'fmc-nowhere'" in said, said
    code, said = restore("ftd-002")  # its files came over its live tunnel: this renewal never wrote them
    assert code == 1 and "never wrote ftd-002's files for fmc-primary" in said, said

    (copy,) = folder(env, "ftd-001", "fmc-primary").glob("cacert.pem.sftrenew-*.bak")
    kept = copy.read_bytes()
    assert kept == before["fmc-primary"]["cacert.pem"]
    copy.write_bytes(kept.replace(b"-----END", b"\n-----END"))
    code, said = restore("ftd-001")
    assert code == 1 and copy.name in said and "nothing was changed" in said, said
    assert files(env, "ftd-001", "fmc-primary") == renewed["fmc-primary"]

    copy.write_bytes(kept)
    code, said = restore("ftd-001")
    assert code == 0, said
    assert files(env, "ftd-001", "fmc-primary") == before["fmc-primary"]
    assert files(env, "ftd-001", "fmc-secondary") == renewed["fmc-secondary"]

    with store.open_session(env.engine) as db:
        events = store.events_of(session=db, renewal_id=renewal_id)
    restores = [(e.action, e.who, e.fmc, e.device) for e in events if e.action.startswith("restore")]
    assert restores == [
        ("restore-refused", "dave", "fmc-primary", "ftd-001"),
        ("restore", "dave", "fmc-primary", "ftd-001"),
    ]
    status = env.sftrenew("status", renewal_id).stdout
    primary = status.split("\nsecondary fmc-secondary")[0]
    lines = [line for line in primary.splitlines() if line.strip().startswith("ftd-001")]
    assert len(lines) == 1 and "restored" in lines[0] and "by dave" in lines[0], status
    assert "restored by dave" not in status.split("\nsecondary fmc-secondary")[1].split("events:")[0]
    _assert_no_secret_in_shell_history(env)
