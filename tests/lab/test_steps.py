"""The five renewal steps against the lab, one test per step and per variant (issue: device access and steps).

Everything here is real: Fabric sessions over SSH to the lab's devices, real bash, generate_certs.pl doing its
work, TLS tunnels reconnecting with the files the steps wrote.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from pipeline.devices.factory import SessionFactory
from pipeline.devices.session import DIRECT, DeviceSession, Route
from pipeline.errors import ForeignCAError
from pipeline.plan import PeerAction, plan_fmc
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import Settings, SshSettings
from pipeline.steps.backup import backup
from pipeline.steps.pair import run_fmc, run_pair
from pipeline.steps.push import FactsInMemory, PushAction, RetryPolicy, push_with_routes
from pipeline.steps.regenerate import regenerate
from pipeline.steps.validate import peers_of, validate
from pipeline.steps.verify import Expected, PollPolicy, Recorded, verify
from tests.lab.fixtures import MakeLab, RunningLab

pytestmark = pytest.mark.lab

FAST = Settings(
    ssh=SshSettings(connect_timeout=2, banner_timeout=5, auth_timeout=5, command_timeout=60),
    verify_deadline=5,
    verify_interval=0.5,
    push_direct_attempts=1,
)


def factory_for(lab: RunningLab, settings: Settings = FAST) -> SessionFactory:
    inventory = read_inventory(lab.directory / "inventory.yaml")
    return SessionFactory(inventory, "lab", SecretResolver(inventory, {}), settings)


def ca_of(lab: RunningLab, fmc: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(lab.file(fmc, "/etc/sf/ca_root/cacert.pem").read_bytes())


def generate_runs(lab: RunningLab, fmc: str) -> list[Path]:
    return sorted(lab.file(fmc, "/var/tmp/certs").glob("[0-9]*"))


def test_backup_reads_the_ca_root_keys_and_peer_folders(shared_lab: RunningLab) -> None:
    factory = factory_for(shared_lab)
    session = factory.open("fmc-primary", DIRECT)
    try:
        saved = backup(session)
    finally:
        session.close()
    paths = {f.path for f in saved.files}
    ftd_uuid = shared_lab.device("ftd-001")["uuid"]
    assert {
        "/etc/sf/ca_root/cacert.pem",
        "/etc/sf/ca_root/private/cakey.pem",
        "/etc/sf/keys/sftunnel-key.pem",
        "/etc/sf/sftunnel.conf",
        f"/var/sf/peers/{ftd_uuid}/certs_pushed/sftunnel-cert.pem",
    } <= paths
    for item in saved.files:
        assert item.data == shared_lab.file("fmc-primary", item.path).read_bytes()
    assert saved.file("/etc/sf/ca_root/private/cakey.pem").secret
    assert not saved.file("/etc/sf/ca_root/cacert.pem").secret
    ca = ca_of(shared_lab, "fmc-primary")
    assert saved.ca_not_after_utc == ca.not_valid_after_utc
    assert "PRIVATE KEY" not in repr(saved)


def test_healthy_pair_renews_and_verifies(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=3)
    before = {fmc: ca_of(lab, fmc) for fmc in ("fmc-primary", "fmc-secondary")}
    runs = run_pair(factory_for(lab), read_inventory(lab.directory / "inventory.yaml").pair("lab"), FAST)
    assert [r.backup.fmc for r in runs] == ["fmc-primary", "fmc-secondary"]
    for run in runs:
        assert run.regenerate.ran and not run.plan.stranded
        assert all(p.ok and p.action is PushAction.SKIP for p in run.pushes), run.pushes
        assert run.verify.ok, run.verify.devices
        assert ca_of(lab, run.backup.fmc) != before[run.backup.fmc]
    for ftd in ("ftd-001", "ftd-002", "ftd-003"):
        lab.restart_sftunnel(ftd)
        assert lab.connected("fmc-primary", ftd) and lab.connected("fmc-secondary", ftd)


def test_expired_pair_comes_back_after_restarts(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=2, scenarios="expired")
    lab.restart_sftunnel("ftd-002")  # it could not come back before the renewal
    assert not lab.connected("fmc-primary", "ftd-002")
    runs = run_pair(factory_for(lab), read_inventory(lab.directory / "inventory.yaml").pair("lab"), FAST)
    assert all(run.verify.ok for run in runs), [run.verify.devices for run in runs]
    for ftd in ("ftd-001", "ftd-002"):
        lab.restart_sftunnel(ftd)
        assert lab.connected("fmc-primary", ftd) and lab.connected("fmc-secondary", ftd)
    assert ca_of(lab, "fmc-primary").not_valid_after_utc > datetime.now(UTC)


class CountingFactory(SessionFactory):
    """The real factory, counting the sessions it is asked to open (instrumentation, not a fake)."""

    def __init__(self, real: SessionFactory) -> None:
        self.__dict__.update(real.__dict__)
        self.opened: list[str] = []

    def open(self, device_name: str, route: Route) -> DeviceSession:
        self.opened.append(device_name)
        return super().open(device_name, route)


def test_verify_judges_pushed_peers_from_their_push_and_reads_only_the_rest(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=3, scenarios="expired")
    factory = factory_for(lab)
    pair = read_inventory(lab.directory / "inventory.yaml").pair("lab")
    run = run_fmc(factory, pair, pair.primary, FAST)
    assert run.verify.ok, run.verify.devices
    recorded = {p.device: p for p in run.pushes}
    assert all(p.ok and p.held is not None for p in recorded.values()), run.pushes

    def expected(wrong_record: str | None = None) -> list[Expected]:
        peers = []
        for peer in peers_of(pair, pair.primary):
            uuid = run.validate.peer(peer.name).uuid
            assert uuid is not None
            held = recorded[peer.name].held
            assert held is not None
            if peer.name == wrong_record:
                held = replace(held, cert_sha256="0" * 64)  # a record of other files cannot answer
            record = Recorded(held, run.regenerate.peer(uuid).cert_pem, "direct")
            peers.append(Expected(peer.name, peer.host, uuid, recorded=record))
        return peers

    counting = CountingFactory(factory)
    fmc = factory.open("fmc-primary", DIRECT)
    try:
        policy = PollPolicy(FAST.verify_deadline, FAST.verify_interval)
        ca = run.regenerate.ca_pem
        fuuid = run.validate.fmc_uuid
        answered = verify(fmc, counting, expected(), fmc_uuid=fuuid, ca_pem=ca, policy=policy)
        assert answered.ok and counting.opened == [], answered.devices
        read = verify(fmc, counting, expected("ftd-002"), fmc_uuid=fuuid, ca_pem=ca, policy=policy)
    finally:
        fmc.close()
    assert read.ok and counting.opened == ["ftd-002"], read.devices
    assert "files checked direct" in next(d.detail for d in read.devices if d.name == "ftd-002")


def test_mixed_pair_direct_jump_and_stranded(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=4, scenarios="mixed")
    factory = factory_for(lab)
    pair = read_inventory(lab.directory / "inventory.yaml").pair("lab")
    primary = pair.primary
    session = factory.open("fmc-primary", DIRECT)
    try:
        facts = validate(session, factory, peers_of(pair, primary), now_utc=datetime.now(UTC))
    finally:
        session.close()
    plan = plan_fmc(facts)
    assert plan.stranded == ("ftd-004",)
    actions = {p.name: (p.action, p.routes) for p in plan.peers}
    assert actions["ftd-001"][0] is PeerAction.LIVE_PUSH
    assert actions["ftd-002"] == (PeerAction.PUSH, (DIRECT,))  # the jump route is not probed after it
    assert actions["ftd-003"] == (PeerAction.PUSH, (Route("jump", "jump-1"),))
    ca_before = ca_of(lab, "fmc-primary")
    assert ca_of(lab, "fmc-primary") == ca_before  # validate changed nothing

    run = run_fmc(factory, pair, primary, FAST)
    pushes = {p.device: p for p in run.pushes}
    assert pushes["ftd-001"].ok and pushes["ftd-001"].action is PushAction.SKIP
    assert pushes["ftd-002"].ok and pushes["ftd-002"].action is PushAction.WRITE
    assert pushes["ftd-002"].route == DIRECT
    assert pushes["ftd-003"].ok and pushes["ftd-003"].route == Route("jump", "jump-1")
    assert not pushes["ftd-004"].ok and pushes["ftd-004"].error_kind == "DeviceUnreachableError"
    verdicts = {d.name: d.verdict.value for d in run.verify.devices}
    assert verdicts == {
        "ftd-001": "verified",
        "ftd-002": "verified",
        "ftd-003": "verified",
        "ftd-004": "unreachable",
        "fmc-secondary": "verified",
    }
    # The pushed FTD really holds the new files: its tunnel re-handshook with them.
    assert lab.connected("fmc-primary", "ftd-003")


def test_regenerate_twice_runs_generate_certs_once(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    factory = factory_for(lab)
    session = factory.open("fmc-primary", DIRECT)
    try:
        saved = backup(session)
        uuid = lab.device("fmc-primary")["uuid"]
        first = regenerate(session, fmc_uuid=uuid, started_from_sha256=saved.ca_sha256)
        second = regenerate(
            session, fmc_uuid=uuid, started_from_sha256=saved.ca_sha256, created_sha256=first.new_ca_sha256
        )
        # A worker killed after generate_certs.pl never recorded the new CA, but had claimed the run first.
        third = regenerate(session, fmc_uuid=uuid, started_from_sha256=saved.ca_sha256, intent_recorded=True)
    finally:
        session.close()
    assert first.ran and not second.ran and not third.ran
    assert first.new_ca_sha256 == second.new_ca_sha256 == third.new_ca_sha256 != saved.ca_sha256
    assert [p.peer_uuid for p in first.peers] == [p.peer_uuid for p in second.peers]
    assert len(generate_runs(lab, "fmc-primary")) == 1


def test_a_foreign_ca_stops_the_run(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    factory = factory_for(lab)
    session = factory.open("fmc-primary", DIRECT)
    try:
        saved = backup(session)
    finally:
        session.close()
    # Somebody regenerates by hand between our backup and our regeneration.
    with lab.root_shell("fmc-primary") as shell:
        shell.send("generate_certs.pl")
        shell.expect(re.escape("[yes/no]:"))
        shell.send("yes")
        shell.expect(re.escape("[yes/no]:"))
        shell.send("yes")
        shell.expect(re.compile(r"# $"), timeout=60)
    session = factory.open("fmc-primary", DIRECT)
    try:
        with pytest.raises(ForeignCAError) as caught:
            regenerate(
                session, fmc_uuid=lab.device("fmc-primary")["uuid"], started_from_sha256=saved.ca_sha256
            )
    finally:
        session.close()
    assert saved.ca_sha256 in str(caught.value)
    assert len(generate_runs(lab, "fmc-primary")) == 1


def test_push_with_wrong_password_and_changed_host_key(make_lab: MakeLab) -> None:
    lab = make_lab(
        ftds=2, devices={"ftd-001": {"wrong_password": True}, "ftd-002": {"host_key_changed": True}}
    )
    factory = factory_for(lab)
    session = factory.open("fmc-primary", DIRECT)
    try:
        saved = backup(session)
        regen = regenerate(
            session, fmc_uuid=lab.device("fmc-primary")["uuid"], started_from_sha256=saved.ca_sha256
        )
    finally:
        session.close()
    sleeps: list[float] = []
    policy = RetryPolicy(direct_attempts=2, backoff_s=1, sleep=sleeps.append)
    for ftd, kind in (("ftd-001", "AuthenticationFailedError"), ("ftd-002", "HostKeyRejectedError")):
        outcome = push_with_routes(
            factory,
            ftd,
            fmc_uuid=lab.device("fmc-primary")["uuid"],
            material=regen.peer(lab.device(ftd)["uuid"]),
            backup_stamp_utc=datetime.now(UTC),
            policy=policy,
        )
        assert not outcome.ok and outcome.error_kind == kind and outcome.attempts == 1
        assert outcome.action is PushAction.REFUSED  # the session never opened: nothing was written
        assert outcome.message and outcome.message.startswith("refused before any write: ")
    assert sleeps == []  # a permanent error is not retried


def test_push_survives_a_connection_dropped_mid_write(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"tunnel": "down"}})
    factory = factory_for(lab)
    fmc_uuid = lab.device("fmc-primary")["uuid"]
    session = factory.open("fmc-primary", DIRECT)
    try:
        saved = backup(session)
        regen = regenerate(session, fmc_uuid=fmc_uuid, started_from_sha256=saved.ca_sha256)
    finally:
        session.close()
    material = regen.peer(lab.device("ftd-001")["uuid"])
    folder = f"/ngfw/var/sf/peers/{fmc_uuid}"
    old = {name: lab.file("ftd-001", f"{folder}/{name}").read_bytes() for name in material.files()}
    lab.set_knobs("ftd-001", drop_after_bytes=9000)
    failed = push_with_routes(
        factory,
        "ftd-001",
        fmc_uuid=fmc_uuid,
        material=material,
        backup_stamp_utc=datetime.now(UTC),
        policy=RetryPolicy(direct_attempts=1, sleep=lambda s: None),
    )
    assert not failed.ok and failed.error_kind == "DeviceUnreachableError"
    for name, data in material.files().items():
        assert lab.file("ftd-001", f"{folder}/{name}").read_bytes() in (old[name], data), name
    lab.set_knobs("ftd-001", drop_after_bytes=None)
    done = push_with_routes(
        factory, "ftd-001", fmc_uuid=fmc_uuid, material=material, backup_stamp_utc=datetime.now(UTC)
    )
    assert done.ok and done.action is PushAction.WRITE
    for name, data in material.files().items():
        assert lab.file("ftd-001", f"{folder}/{name}").read_bytes() == data
    assert lab.connected("fmc-primary", "ftd-001")


def test_a_restart_lost_after_the_write_is_made_by_the_next_attempt(make_lab: MakeLab) -> None:
    """The first `pmtool restartbyid sftunnel` cuts the connection (`restart: drop_once`): the files are new,
    sftunnel is not restarted. The next attempt must restart it (not skip because the files are new)."""
    lab = make_lab(ftds=1, devices={"ftd-001": {"tunnel": "down", "restart": "drop_once"}})
    factory = factory_for(lab)
    fmc_uuid = lab.device("fmc-primary")["uuid"]
    session = factory.open("fmc-primary", DIRECT)
    try:
        saved = backup(session)
        regen = regenerate(session, fmc_uuid=fmc_uuid, started_from_sha256=saved.ca_sha256)
    finally:
        session.close()
    material = regen.peer(lab.device("ftd-001")["uuid"])
    facts = FactsInMemory()
    done = push_with_routes(
        factory,
        "ftd-001",
        fmc_uuid=fmc_uuid,
        material=material,
        backup_stamp_utc=datetime.now(UTC),
        policy=RetryPolicy(direct_attempts=2, sleep=lambda s: None),
        facts=facts,
    )
    assert done.ok and done.action is PushAction.RESTART and done.attempts == 2, done
    assert done.message == "files already new (written by an earlier attempt); sftunnel restarted"
    assert lab.restarts("ftd-001") == 1  # the dropped one did not restart anything
    assert not facts.facts.restart_owed
    assert lab.connected("fmc-primary", "ftd-001")  # the restart brought the tunnel up on the new files
    again = push_with_routes(
        factory,
        "ftd-001",
        fmc_uuid=fmc_uuid,
        material=material,
        backup_stamp_utc=datetime.now(UTC),
        facts=facts,
    )
    assert again.ok and again.action is PushAction.SKIP and lab.restarts("ftd-001") == 1


def test_fmc_landing_in_bash_renews(make_lab: MakeLab) -> None:
    lab = make_lab(
        ftds=1, devices={"fmc-primary": {"lands_in": "bash", "sudo": "lecture", "last_login": True}}
    )
    pair = read_inventory(lab.directory / "inventory.yaml").pair("lab")
    run = run_fmc(factory_for(lab), pair, pair.primary, FAST)
    assert run.regenerate.ran and run.verify.ok


def test_no_secret_in_the_logs_of_a_renewal(make_lab: MakeLab, caplog: pytest.LogCaptureFixture) -> None:
    lab = make_lab(ftds=2, devices={"ftd-002": {"tunnel": "down"}})
    caplog.set_level(logging.DEBUG)
    pair = read_inventory(lab.directory / "inventory.yaml").pair("lab")
    runs = run_pair(factory_for(lab), pair, FAST)
    assert all(run.verify.ok for run in runs)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert caplog.records, "nothing was logged at DEBUG: the test would prove nothing"
    for secret in lab.secrets.values():
        assert secret not in text
    assert "PRIVATE KEY" not in text
    key_lines = {
        line
        for run in runs
        for peer in run.regenerate.peers
        for line in peer.key_pem.decode().splitlines()
        if len(line) == 64
    }
    assert key_lines and not any(line in text for line in key_lines)


def test_step_runner_script_renews_a_pair(make_lab: MakeLab) -> None:
    """`python -m pipeline.steps`: the real command, in its own process, against the lab."""
    lab = make_lab(ftds=2)
    env = {**os.environ, "SFTRENEW_VERIFY_DEADLINE": "10", "SFTRENEW_VERIFY_INTERVAL": "0.5"}
    command = [sys.executable, "-m", "pipeline.steps", "--inventory", str(lab.directory / "inventory.yaml")]
    result = subprocess.run(
        [*command, "--pair", "lab"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[fmc-primary] regenerate: ran generate_certs.pl" in out
    assert "[fmc-secondary] verify" in out and out.count(": verified (") == 6
    missing = subprocess.run(
        [*command, "--pair", "nope"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert missing.returncode == 2 and "nope" in missing.stderr
