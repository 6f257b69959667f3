"""Devices protected from the product (issue 11, item 2): after a device refused a login (authentication or
host key), no other route of the step tries it again, so a wrong password costs one refused login per device
per step, not one per route (on a real FTD with AAA lockout, every refused login counts towards locking the
admin account). The lab's SSH server counts the password logins it refused, per device."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.devices.session import DIRECT
from pipeline.plan import PeerAction, plan_fmc
from pipeline.secrets import read_inventory
from pipeline.steps.pair import run_pair
from pipeline.steps.push import PushAction
from pipeline.steps.validate import peers_of, validate
from pipeline.steps.verify import Expected, Verdict, inspect_device
from tests.lab.fixtures import MakeLab
from tests.lab.test_steps import FAST, factory_for

pytestmark = pytest.mark.lab


def test_validate_stops_at_the_first_refused_login(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=2, devices={"ftd-001": {"wrong_password": True}})
    factory = factory_for(lab)
    pair = read_inventory(lab.directory / "inventory.yaml").pair("lab")
    assert len(factory.routes_for("ftd-001")) == 2  # direct, then its jump server: both would be refused
    session = factory.open("fmc-primary", DIRECT)
    try:
        facts = validate(session, factory, peers_of(pair, pair.primary), now_utc=datetime.now(UTC))
    finally:
        session.close()

    assert lab.refused_logins("ftd-001") == 1  # was 2: the jump route logged in again after the refusal
    assert lab.refused_logins("ftd-002") == 0
    refused = facts.peer("ftd-001")
    assert [(str(p.route), p.ok, p.error_kind) for p in refused.probes] == [
        ("direct", False, "AuthenticationFailedError")
    ]
    assert refused.refusal is not None and refused.refusal.error_kind == "AuthenticationFailedError"
    plan = {p.name: p for p in plan_fmc(facts).peers}
    assert plan["ftd-001"].action is PeerAction.LIVE_PUSH  # its tunnel is up: generate_certs.pl pushes it
    line = plan["ftd-001"].describe()
    assert "authentication refused for admin on ftd-001" in line and "fix its credential" in line, line
    assert "no SSH route" not in line
    assert plan["ftd-002"].refusal is None and facts.peer("ftd-002").routes_ok


def test_verify_stops_at_the_first_refused_login(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"wrong_password": True}})
    factory = factory_for(lab)
    verdict = inspect_device(
        factory,
        Expected("ftd-001", lab.device("ftd-001")["host"], lab.device("ftd-001")["uuid"]),
        fmc_uuid=lab.device("fmc-primary")["uuid"],
        ca_pem=lab.file("fmc-primary", "/etc/sf/ca_root/cacert.pem").read_bytes(),
        connected=True,
        now_utc=datetime.now(UTC),
    )
    assert lab.refused_logins("ftd-001") == 1  # was 2
    assert verdict.verdict is Verdict.UNREACHABLE
    assert "authentication refused for admin on ftd-001" in verdict.detail, verdict.detail


def test_the_in_process_runner_does_not_log_in_again_after_validate_was_refused(make_lab: MakeLab) -> None:
    """`python -m pipeline.steps` asks `pipeline.flow.login_refused` as the Celery tasks do: a device that
    refused validate's login is not logged in to by the push nor by verify, so the whole run costs one refused
    login per FMC (was 3: validate, push, verify), and the push and the verdict say why."""
    lab = make_lab(ftds=2, devices={"ftd-001": {"wrong_password": True, "tunnel": "down"}})
    pair = read_inventory(lab.directory / "inventory.yaml").pair("lab")
    runs = run_pair(factory_for(lab), pair, FAST)

    assert lab.refused_logins("ftd-001") == 2  # one per FMC's validate
    for run in runs:
        push = next(p for p in run.pushes if p.device == "ftd-001")
        assert (push.ok, push.action, push.attempts) == (False, PushAction.REFUSED, 0), push
        assert push.error_kind == "AuthenticationFailedError"
        assert push.message and "refused at validate" in push.message, push.message
        assert "authentication refused for admin on ftd-001" in push.message, push.message
        verdict = next(d for d in run.verify.devices if d.name == "ftd-001")
        assert verdict.verdict is Verdict.UNREACHABLE and "refused at validate" in verdict.detail, verdict
        assert run.verify.verdict("ftd-002") is Verdict.VERIFIED


def test_a_jump_server_refusal_is_its_own_and_is_not_asked_again(make_lab: MakeLab) -> None:
    """jump-1 refuses the login (its password was rotated). That refusal is the jump server's, not the FTDs'
    (it was recorded as theirs: ftd-001, reachable directly, was then not pushed), and once the jump server
    refused, nothing in the run logs in through it again: one refused login on the jump server for the whole
    in-process run (was 6: one per FTD per validate; now only ftd-002, which has no other route, tries it,
    and its push and verify do not try it again)."""
    lab = make_lab(
        ftds=3,
        devices={
            "jump-1": {"wrong_password": True},
            "ftd-001": {"tunnel": "down"},
            "ftd-002": {"tunnel": "down", "direct": "refuse"},
        },
    )
    pair = read_inventory(lab.directory / "inventory.yaml").pair("lab")
    runs = run_pair(factory_for(lab), pair, FAST)

    assert lab.refused_logins("jump-1") == 1
    for run in runs:
        for ftd in ("ftd-001", "ftd-002", "ftd-003"):
            peer = run.validate.peer(ftd)
            assert peer.refusal is None, peer  # not the device's refusal
            jumps = [p for p in peer.probes if p.route.kind == "jump"]
            if ftd != "ftd-002":
                assert jumps == [], peer  # reached directly: the jump route is not probed after it
                continue
            (jump,) = jumps
            assert (jump.ok, jump.error_kind) == (False, "AuthenticationFailedError"), jump
        pushed = {p.device: p for p in run.pushes}
        assert pushed["ftd-001"].ok and str(pushed["ftd-001"].route) == "direct", pushed["ftd-001"]
        assert pushed["ftd-002"].action is PushAction.REFUSED, pushed["ftd-002"]
        assert pushed["ftd-002"].error_kind == "AuthenticationFailedError"
        assert run.verify.verdict("ftd-001") is Verdict.VERIFIED
        assert run.verify.verdict("ftd-002") is Verdict.UNREACHABLE
