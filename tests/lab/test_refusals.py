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
from pipeline.steps.validate import peers_of, validate
from pipeline.steps.verify import Expected, Verdict, inspect_device
from tests.lab.fixtures import MakeLab
from tests.lab.test_steps import factory_for

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
