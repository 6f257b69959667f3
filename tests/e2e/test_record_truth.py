"""The record tells the truth under faults, and the foreign-CA fence holds whatever the clocks say: real
workers, real Redis, SQLite, the lab.

- a regeneration made by hand between the backup and the regenerate step stops the renewal (ForeignCAError);
- an attempt whose worker was killed is closed as `interrupted` once the step is taken over;
- a duplicate regenerate that stood aside is recorded as `ignored`, and `status` shows the real run;
- a message arriving after the renewal finished leaves it untouched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from celery import Celery
from celery.result import AsyncResult

from pipeline.certs import CertFacts
from pipeline.settings import CelerySettings, Settings
from pipeline.store import StepRun
from sftlab.tools import regen
from tasks.queues import CONTROL_QUEUE
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import RenewalEnv
from tests.e2e.services import http_get, wait_until
from workers.app import make_celery

pytestmark = pytest.mark.e2e

CA_CERT = "/etc/sf/ca_root/cacert.pem"
#: Short Celery limits: a killed worker's message comes back within seconds, and so does the reconciler.
FAST_RECOVERY = {
    "SFTRENEW_VISIBILITY_TIMEOUT": "20",
    "SFTRENEW_TASK_TIME_LIMIT": "15",
    "SFTRENEW_SSH_REGENERATE_TIMEOUT": "12",
    "SFTRENEW_STALL_AFTER": "30",
}


def ca_sha256(env: RenewalEnv, fmc: str) -> str:
    return CertFacts.from_pem(env.lab.file(fmc, CA_CERT).read_bytes()).sha256


def generate_runs(env: RenewalEnv, fmc: str) -> int:
    return len(list(env.lab.file(fmc, "/var/tmp/certs").glob("[0-9]*")))


def started(env: RenewalEnv, renewal_id: str, step: str, fmc: str = "fmc-primary") -> bool:
    return any(s.step == step and s.fmc == fmc and s.device is None for s in env.steps(renewal_id))


def settled_steps(env: RenewalEnv, renewal_id: str) -> list[StepRun]:
    """The renewal's step runs once none is `started` any more: a twin still running when the renewal ended
    (a redelivery beside a resend) records its end too; an attempt whose worker died must not stay started."""
    wait_until(
        lambda: not any(s.state == "started" for s in env.steps(renewal_id)),
        timeout=60,
        what="every attempt recorded as ended",
    )
    return env.steps(renewal_id)


def regenerate_by_hand(env: RenewalEnv, fmc: str) -> None:
    """generate_certs.pl as an operator would run it on the FMC, through the lab's own regeneration."""
    fleet = env.lab.fleet
    env.lab.runner.call(
        regen.regenerate(fleet.hub, fleet.tunnel_device(fmc), keys=fleet.keys, now_utc=datetime.now(UTC))
    )


def celery_app(env: RenewalEnv) -> Celery:
    return make_celery(
        Settings(celery=CelerySettings(broker_url=f"{env.redis.url}/0", result_backend=f"{env.redis.url}/1"))
    )


def result_state(env: RenewalEnv, task_id: str) -> str:
    state: str = AsyncResult(task_id, app=celery_app(env)).state
    return state


def test_a_hand_made_regeneration_after_the_backup_stops_the_renewal(make_sqlite_env: MakeEnv) -> None:
    """Backup, then generate_certs.pl by hand, then the regenerate step: the CA is not this renewal's. The
    hand-made CA is minutes younger than the claim at most, which the old clock-skew rule adopted."""
    slow = {"latency_ms": 400}
    # Validate logs in to the slow FTDs (not taking the plan gate's routes), which holds it open long enough
    # for the kill to land between the backup and the regenerate step.
    env = make_sqlite_env(
        {"ftds": 2, "devices": {"ftd-001": slow, "ftd-002": slow}},
        **{**FAST_RECOVERY, "SFTRENEW_PLAN_FRESH_FOR": "0"},
    )
    backed_up = ca_sha256(env, "fmc-primary")
    first = env.start_worker()
    renewal_id = env.enqueue()
    wait_until(lambda: started(env, renewal_id, "validate"), timeout=120, what="validate starting")
    first.kill()  # after the backup, before the regenerate step
    assert not started(env, renewal_id, "regenerate"), "the worker was killed too late to test the fence"
    regenerate_by_hand(env, "fmc-primary")
    assert ca_sha256(env, "fmc-primary") != backed_up and generate_runs(env, "fmc-primary") == 1

    env.start_worker(beat=True)
    finished = env.wait_finished(renewal_id, timeout=200)
    steps = settled_steps(env, renewal_id)
    status = env.sftrenew("status", renewal_id).stdout
    assert finished.state == "failed", status
    regenerations = [s for s in steps if s.step == "regenerate" and s.state != "ignored"]
    assert [(s.fmc, s.state, s.error_kind) for s in regenerations] == [
        ("fmc-primary", "failed", "ForeignCAError")
    ], status
    assert "regenerate:failed" in status
    assert generate_runs(env, "fmc-primary") == 1  # only the hand-made run: the renewal ran none
    assert not any(s.step == "push" for s in steps)
    # The validate the kill cut is closed as interrupted when its step is taken over.
    validates = [s for s in steps if s.step == "validate" and s.fmc == "fmc-primary"]
    assert validates[0].state == "interrupted", status
    assert "succeeded" in {s.state for s in validates[1:]}, status


def test_killed_mid_regenerate_ends_with_one_regeneration_and_no_started_attempt(
    make_sqlite_env: MakeEnv,
) -> None:
    """The killed task's message is not delivered again (a long visibility timeout): the reconciler takes the
    step over with a new task. The killed attempt is closed as interrupted in the record, and as failed in
    Celery's result backend and in Flower (not STARTED forever beside the task that took over)."""
    env = make_sqlite_env(
        {"ftds": 2, "devices": {"fmc-primary": {"latency_ms": 300}}},
        **{**FAST_RECOVERY, "SFTRENEW_VISIBILITY_TIMEOUT": "600"},
    )
    url, auth = env.start_flower()
    first = env.start_worker()
    env.wait_flower_sees_workers(url, auth)
    renewal_id = env.enqueue()
    wait_until(lambda: started(env, renewal_id, "regenerate"), timeout=120, what="regenerate starting")
    first.kill()
    env.start_worker(beat=True)
    finished = env.wait_finished(renewal_id, timeout=200)
    steps = settled_steps(env, renewal_id)
    status = env.sftrenew("status", renewal_id).stdout
    assert finished.state == "succeeded", status
    assert generate_runs(env, "fmc-primary") == 1 and generate_runs(env, "fmc-secondary") == 1
    regenerations = [s for s in steps if s.step == "regenerate" and s.fmc == "fmc-primary"]
    killed = regenerations[0]
    assert killed.state == "interrupted", f"the kill came too late: {[s.state for s in regenerations]}"
    assert [s.state for s in regenerations[1:]] == ["succeeded"], status
    assert regenerations[1].task_id != killed.task_id  # the reconciler's task took the step over
    primary = next(line for line in status.splitlines() if "fmc-primary" in line)
    assert "regenerate:succeeded" in primary, status
    assert killed.task_id and result_state(env, killed.task_id) == "FAILURE"

    def flower_state() -> str:
        state: str = json.loads(http_get(f"{url}/api/task/info/{killed.task_id}", auth)).get("state", "")
        return state

    wait_until(lambda: flower_state() == "FAILURE", timeout=30, what="Flower showing the killed task failed")


def test_a_duplicate_is_ignored_and_a_late_message_leaves_the_finished_renewal_untouched(
    make_sqlite_env: MakeEnv,
) -> None:
    env = make_sqlite_env({"ftds": 1})
    env.start_worker()
    renewal_id = env.enqueue()
    wait_until(lambda: started(env, renewal_id, "regenerate"), timeout=120, what="regenerate starting")
    app = celery_app(env)
    # A twin of the regenerate message (as a redelivery beside a live task, or a resend would make).
    app.send_task("sftrenew.regenerate", args=(renewal_id, "fmc-primary"), queue=CONTROL_QUEUE)
    finished = env.wait_finished(renewal_id)
    steps = settled_steps(env, renewal_id)
    status = env.sftrenew("status", renewal_id).stdout
    assert finished.state == "succeeded", status
    regenerations = sorted(s.state for s in steps if s.step == "regenerate")
    assert regenerations == ["ignored", "succeeded", "succeeded"], status  # the twin, and each FMC's run
    assert "regenerate:succeeded" in status and ":failed" not in status and ":ignored" not in status
    assert generate_runs(env, "fmc-primary") == 1

    # Messages arriving after the end (a redelivery, a stale resend): no step runs, nothing moves.
    recorded = [(s.id, s.state) for s in env.steps(renewal_id)]
    late = [
        app.send_task("sftrenew.regenerate", args=(renewal_id, "fmc-primary"), queue=CONTROL_QUEUE),
        app.send_task("sftrenew.backup", args=(renewal_id, "fmc-secondary"), queue=CONTROL_QUEUE),
        app.send_task("sftrenew.verify", args=(renewal_id, "fmc-primary", 1), queue=CONTROL_QUEUE),
    ]
    wait_until(
        lambda: all(f"{r.id}] ignored" in env.logs() for r in late),
        timeout=60,
        what="the worker ignoring the late messages",
    )
    assert [(s.id, s.state) for s in env.steps(renewal_id)] == recorded
    after = env.renewal(renewal_id)
    assert (after.state, after.finished_at_utc) == ("succeeded", finished.finished_at_utc)
    assert generate_runs(env, "fmc-primary") == 1 and generate_runs(env, "fmc-secondary") == 1
