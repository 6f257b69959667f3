"""The operator's gates on a running renewal: hold, approve, abandon. Real worker and Redis, SQLite, the lab.

- a held renewal runs backup and validate, then waits: nothing regenerates, the reconciler sends nothing;
- `approve` plans again and refuses when a route changed since enqueue, showing the difference; once the
  device is back as planned it approves, records who, and the renewal runs to the end;
- `abandon` ends a held renewal cleanly and frees its pair; a finished renewal cannot be abandoned.
"""

from __future__ import annotations

import time

import pytest

from pipeline import store
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import RenewalEnv
from tests.e2e.services import wait_until

pytestmark = pytest.mark.e2e

LAB = {"ftds": 3, "scenarios": "expired", "devices": {"ftd-003": {"tunnel": "down", "via_jump": True}}}


def generate_runs(env: RenewalEnv, fmc: str) -> int:
    return len(list(env.lab.file(fmc, "/var/tmp/certs").glob("[0-9]*")))


def wait_awaiting(env: RenewalEnv, renewal_id: str) -> str:
    def awaiting() -> bool:
        return "AWAITING APPROVAL" in env.sftrenew("status", renewal_id).stdout

    wait_until(awaiting, timeout=120, what="the renewal awaiting approval")
    return env.sftrenew("status", renewal_id).stdout


def test_a_held_renewal_waits_and_approve_refuses_a_changed_plan(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(LAB, SFTRENEW_STALL_AFTER="2", SFTRENEW_RECONCILE_INTERVAL="1")
    env.start_worker(beat=True)
    renewal_id = env.enqueue("--hold", "--by", "alice", force=False)
    status = wait_awaiting(env, renewal_id)
    assert "ftd-003: pushed over SSH (direct)" in status, status
    time.sleep(4)  # the reconciler runs meanwhile, and must not send the regeneration
    assert generate_runs(env, "fmc-primary") == 0
    assert "AWAITING APPROVAL" in env.sftrenew("status", renewal_id).stdout

    env.lab.set_knobs("ftd-003", direct="refuse")  # its direct route broke since enqueue
    changed = env.sftrenew("approve", renewal_id, "--by", "bob")
    assert changed.returncode == 1, changed.stderr
    assert "the plan changed since enqueue: fmc-primary: ftd-003 routes were direct, now" in changed.stderr
    assert "via jump-1" in changed.stderr and "nothing was approved" in changed.stderr
    assert generate_runs(env, "fmc-primary") == 0

    env.lab.set_knobs("ftd-003", direct="open")
    approved = env.sftrenew("approve", renewal_id, "--by", "bob")
    assert approved.returncode == 0, approved.stderr
    assert "approved by bob" in approved.stdout
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    assert generate_runs(env, "fmc-primary") == 1 and generate_runs(env, "fmc-secondary") == 1
    with store.open_session(env.engine) as db:
        events = store.events_of(session=db, renewal_id=renewal_id)
    assert [(e.action, e.who) for e in events] == [
        ("enqueue", "alice"),
        ("hold", "alice"),
        ("approve", "bob"),
    ]
    again = env.sftrenew("approve", renewal_id)
    assert again.returncode == 2 and "ended (succeeded)" in again.stderr


def test_abandon_ends_a_held_renewal_and_frees_the_pair(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(LAB)
    env.start_worker()
    renewal_id = env.enqueue("--hold", force=False)
    wait_awaiting(env, renewal_id)
    no_reason = env.sftrenew("abandon", renewal_id)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    abandoned = env.sftrenew("abandon", renewal_id, "--reason", "change window closed", "--by", "carol")
    assert abandoned.returncode == 0, abandoned.stderr
    assert "pair lab is free" in abandoned.stdout and "not on the new CA" not in abandoned.stdout
    assert env.renewal(renewal_id).state == "failed"
    assert generate_runs(env, "fmc-primary") == 0
    with store.open_session(env.engine) as db:
        (event,) = store.events_of(session=db, renewal_id=renewal_id, action="abandon")
    assert (event.who, event.detail) == ("carol", "change window closed")
    assert env.enqueue("--hold", force=False) != renewal_id  # the pair is free for a new renewal


def test_pause_starts_no_push_until_resume(make_sqlite_env: MakeEnv) -> None:
    slow = {"tunnel": "down", "latency_ms": 150}
    lab = {"ftds": 4, "scenarios": "expired", "devices": {f"ftd-00{i}": slow for i in range(1, 5)}}
    env = make_sqlite_env(lab, SFTRENEW_WORKER_CONCURRENCY="1")  # one push at a time
    env.start_worker()
    renewal_id = env.enqueue(force=False)

    def pushes() -> list[store.StepRun]:
        return [s for s in env.steps(renewal_id) if s.step == "push"]

    wait_until(lambda: bool(pushes()), timeout=120, what="the first push")
    paused = env.sftrenew("pause", renewal_id, "--reason", "change freeze", "--by", "dave")
    assert paused.returncode == 0, paused.stderr
    wait_until(
        lambda: all(s.state != "started" for s in pushes()), timeout=60, what="the running push finishing"
    )
    started = len(pushes())
    time.sleep(5)  # no push starts, and no verify, while paused
    assert len(pushes()) == started < 5, [(s.device, s.state) for s in pushes()]
    assert not any(s.step == "verify" for s in env.steps(renewal_id))
    assert "PAUSED" in env.sftrenew("status", renewal_id).stdout

    resumed = env.sftrenew("resume", renewal_id, "--by", "dave")
    assert resumed.returncode == 0 and "sent pushes" in resumed.stdout, resumed.stdout + resumed.stderr
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    with store.open_session(env.engine) as db:
        events = store.events_of(session=db, renewal_id=renewal_id)
    assert [(e.action, e.who, e.detail) for e in events if e.action in ("pause", "resume")] == [
        ("pause", "dave", "change freeze"),
        ("resume", "dave", None),
    ]
