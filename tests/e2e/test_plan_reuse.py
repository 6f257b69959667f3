"""The plan gate's probes serve the renewal (issue "A 300-FTD pair in minutes", item 2): enqueue probes each
device of the pair once for both FMCs, and each FMC's validate, moments later, logs in to no device the gate
found working; it reads the FMC's tunnels afresh and probes again only a device the gate could not reach. With
`SFTRENEW_PLAN_FRESH_FOR=0` validate probes every device itself.

Real `sftrenew` commands, a real worker on a private Redis, SQLite, the lab over SSH; the lab counts the
sessions each device opened and when.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlmodel import select

from pipeline import store
from pipeline.records import ValidateRecord
from tasks.artifacts import read_validate_record
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import RenewalEnv

pytestmark = pytest.mark.e2e

FMCS = ("fmc-primary", "fmc-secondary")
#: The mixed scenario: ftd-001's tunnel is up, ftd-002 is reached directly, ftd-003 only through jump-1,
#: ftd-004 by no route (stranded, accepted at enqueue).
LAB = {"ftds": 4, "scenarios": "mixed"}
REACHED = ("ftd-001", "ftd-002", "ftd-003")


def sessions(env: RenewalEnv, device: str, start: datetime | None = None, end: datetime | None = None) -> int:
    """SSH sessions `device` opened (in the window, when given)."""
    opened = [s.opened_at for s in env.lab.fleet.devices[device].endpoint.usage.sessions]
    if start is None or end is None:
        return len(opened)
    return sum(start.timestamp() <= t <= end.timestamp() for t in opened)


def validate_windows(env: RenewalEnv, renewal_id: str) -> dict[str, tuple[datetime, datetime]]:
    found = {}
    for step in env.steps(renewal_id):
        if step.step == "validate" and step.state == "succeeded" and step.finished_at_utc is not None:
            found[step.fmc] = (step.started_at_utc, step.finished_at_utc)
    assert set(found) == set(FMCS), found
    return found


def validate_record(env: RenewalEnv, renewal_id: str, fmc: str) -> ValidateRecord:
    with store.open_session(env.engine) as db:
        artifact = db.exec(
            select(store.Artifact).where(
                store.Artifact.renewal_id == renewal_id,
                store.Artifact.fmc == fmc,
                store.Artifact.kind == "validate",
            )
        ).all()[-1]
    return read_validate_record(artifact.data, renewal_id=renewal_id, fmc=fmc)


def renew(env: RenewalEnv) -> str:
    """Enqueue (its plan gate probes the pair) before any worker runs, then let one worker run it."""
    renewal_id = env.enqueue("--accept-stranded", "ftd-004")
    # The gate: one session per reached device for both FMCs (two before: one per FMC).
    assert {name: sessions(env, name) for name in REACHED} == dict.fromkeys(REACHED, 1)
    env.start_worker()
    assert env.wait_finished(renewal_id).state == "partial", env.sftrenew("status", renewal_id).stdout
    verified = {
        (s.fmc, s.device) for s in env.steps(renewal_id) if s.step == "verify" and s.state == "succeeded"
    }
    assert {(fmc, name) for fmc in FMCS for name in REACHED} <= verified, verified
    return renewal_id


def test_validate_takes_the_plans_working_routes_and_probes_the_rest(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(LAB)
    renewal_id = renew(env)

    for fmc, (start, end) in validate_windows(env, renewal_id).items():
        # No login to a device the gate found working minutes ago: not through jump-1 either.
        opened = {name: sessions(env, name, start, end) for name in (*REACHED, "jump-1")}
        assert opened == dict.fromkeys(opened, 0), (fmc, opened)
        record = validate_record(env, renewal_id, fmc)
        by_name = {p.name: p for p in record.peers}
        assert all(by_name[name].from_plan for name in REACHED), record
        # ftd-004 had no route at the gate: validate tried it again (and found none).
        assert not by_name["ftd-004"].from_plan and by_name["ftd-004"].routes == ()
        assert by_name["ftd-003"].routes == ("via jump-1",)
        # The tunnels are read afresh from the FMC, not taken from the plan: the gate saw ftd-002's tunnels
        # down; the primary's push restarted its sftunnel, so by the secondary's validate its tunnel to the
        # secondary (whose CA has not changed yet) is up again.
        assert by_name["ftd-001"].tunnel == "up"
        assert by_name["ftd-002"].tunnel == ("down" if fmc == "fmc-primary" else "up")


def test_with_no_freshness_validate_probes_every_device(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(LAB, SFTRENEW_PLAN_FRESH_FOR="0")
    renewal_id = renew(env)

    for fmc, (start, end) in validate_windows(env, renewal_id).items():
        opened = {name: sessions(env, name, start, end) for name in REACHED}
        assert opened == dict.fromkeys(REACHED, 1), (fmc, opened)
        record = validate_record(env, renewal_id, fmc)
        assert not any(p.from_plan for p in record.peers), record
