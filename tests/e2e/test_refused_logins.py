"""Devices protected from the product, end to end (issue 11, item 2): a device that refused a login (a wrong
password, a host key not known) is not tried again by any other route or step of the same renewal until the
operator asks for a retry. On a real FTD with AAA lockout every refused login counts towards locking the admin
account; the lab's SSH server counts them per device.

Real `sftrenew` commands, real workers on a private Redis, SQLite, the lab over SSH.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import MakeEnv

pytestmark = pytest.mark.e2e

FMCS = ("fmc-primary", "fmc-secondary")


def test_a_wrong_password_costs_one_refused_login_per_validate(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env({"ftds": 2, "devices": {"ftd-001": {"wrong_password": True}}})

    plan = env.sftrenew("plan", "--pair", "lab")
    assert plan.returncode == 1, plan.stderr
    assert "authentication refused for admin on ftd-001" in plan.stdout, plan.stdout
    assert "fix its credential" in plan.stdout and "no SSH route" not in plan.stdout, plan.stdout
    # One probe of ftd-001 for both FMCs, stopping at its first refusal (was 4: per FMC, direct, then the
    # jump server; then 2: once per FMC).
    assert env.lab.refused_logins("ftd-001") == 1

    env.start_worker()
    renewal_id = env.enqueue()
    assert env.wait_finished(renewal_id).state == "partial", env.sftrenew("status", renewal_id).stdout
    # The whole renewal: one refused login, the plan gate's at enqueue (its direct route; the jump route is
    # not tried after a refusal); each FMC's validate takes that refusal from the plan and does not log in;
    # the round-1 push fails at once from validate's record, without logging in; verify does not log in to a
    # device whose push this round was refused. 1 in all (was 10: per FMC, validate 2, push 1, verify 2).
    assert env.lab.refused_logins("ftd-001") - 1 == 1
    assert env.lab.refused_logins("ftd-002") == 0
    for fmc in FMCS:
        refused = env.last_push(renewal_id, fmc, "ftd-001")
        assert (refused.state, refused.error_kind, refused.attempt) == (
            "refused",
            "AuthenticationFailedError",
            1,
        )
        assert refused.message and "refused at validate" in refused.message, refused.message
        assert "sftrenew retry" in refused.message, refused.message
        verdict = next(
            s for s in env.steps(renewal_id) if s.step == "verify" and s.fmc == fmc and s.device == "ftd-001"
        )
        assert verdict.state == "failed" and verdict.error_kind == "Unreachable", verdict
        assert verdict.message and "refused" in verdict.message, verdict.message

    # A retry is the operator's word that the credential was fixed: the push logs in again (round 2).
    env.lab.set_knobs("ftd-001", wrong_password=False)
    retried = env.sftrenew("retry", renewal_id, "--by", "alice")
    assert retried.returncode == 0, retried.stderr
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    assert env.lab.refused_logins("ftd-001") == 2  # no refused login after the fix


def test_a_jump_server_that_refuses_the_login_is_not_the_devices_refusal(make_sqlite_env: MakeEnv) -> None:
    """jump-1 refuses the login (its password was rotated). The refusal is the jump server's: ftd-001, whose
    tunnel is down and whose direct route works, is pushed directly in round 1 (it was refused without a login
    as if it had refused validate itself, and the renewal ended partial). Only ftd-003, whose direct route is
    refused, needs the jump server: one refused login for a whole plan (was one per FTD per FMC)."""
    devices = {
        "jump-1": {"wrong_password": True},
        "ftd-001": {"tunnel": "down"},
        "ftd-003": {"direct": "refuse"},
    }
    env = make_sqlite_env({"ftds": 3, "devices": devices})

    plan = env.sftrenew("plan", "--pair", "lab")
    assert plan.returncode == 1, plan.stderr
    assert "jump server jump-1 refused the login (AuthenticationFailedError)" in plan.stdout, plan.stdout
    assert "ftd-001: pushed over SSH (direct)" in plan.stdout, plan.stdout
    # The whole plan, both FMCs: only ftd-003 needs the jump server (was 6: one per FTD per FMC).
    assert env.lab.refused_logins("jump-1") == 1

    env.start_worker()
    # ftd-003's tunnel is up: generate_certs.pl pushes it, though no route of ours can check it.
    renewal_id = env.enqueue()
    env.wait_finished(renewal_id)
    pushed = env.last_push(renewal_id, "fmc-primary", "ftd-001")
    assert (pushed.state, pushed.route) == ("succeeded", "direct"), pushed
    for ftd in ("ftd-001", "ftd-002"):
        assert env.last_push(renewal_id, "fmc-secondary", ftd).state in ("succeeded", "skipped")
    assert all(env.lab.refused_logins(f"ftd-00{i}") == 0 for i in (1, 2, 3))
