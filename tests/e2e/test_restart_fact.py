"""What real devices keep and the lab used to throw away, end to end on Celery: a restart lost between the
write and `pmtool` (the next attempt must restart, not skip because the files are new), and a push refused
before any write (recorded as refused, with the reason, and offered to `sftrenew retry`).

Real `sftrenew` commands, real workers on a private Redis, SQLite, the lab over SSH; judged by the database of
record, the result backend, `sftrenew status` and the lab's own tunnels and restart counter.
"""

from __future__ import annotations

import pytest
from celery.result import AsyncResult
from sqlmodel import Session

from pipeline import store
from pipeline.settings import CelerySettings, Settings
from pipeline.steps.push import RESTARTED_ONLY
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import RenewalEnv
from workers.app import make_celery

pytestmark = pytest.mark.e2e

FMCS = ("fmc-primary", "fmc-secondary")


def _result(env: RenewalEnv, task_id: str) -> AsyncResult:
    app = make_celery(
        Settings(celery=CelerySettings(broker_url=f"{env.redis.url}/0", result_backend=f"{env.redis.url}/1"))
    )
    return AsyncResult(task_id, app=app)


def _verdicts(env: RenewalEnv, renewal_id: str, fmc: str) -> dict[str, str]:
    return {
        s.device: s.state
        for s in env.steps(renewal_id)
        if s.step == "verify" and s.fmc == fmc and s.device is not None
    }


def test_a_restart_cut_off_after_the_write_is_made_by_the_next_attempt(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(
        {
            "ftds": 3,
            "scenarios": "expired",
            "devices": {"ftd-002": {"tunnel": "down", "restart": "drop_once"}},
        }
    )
    env.start_worker()
    renewal_id = env.enqueue()
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout

    # One effective restart per FMC's push: the primary's first one was cut off, its retry restarted; the
    # secondary's push wrote and restarted. The FTDs generate_certs.pl pushed to over live tunnels: none.
    assert env.lab.restarts("ftd-002") == 2
    assert env.lab.restarts("ftd-001") == env.lab.restarts("ftd-003") == 0
    for fmc in FMCS:
        assert _verdicts(env, renewal_id, fmc)["ftd-002"] == "succeeded", fmc

    pushes = [s for s in env.steps(renewal_id) if s.step == "push" and s.device == "ftd-002"]
    primary = [s for s in pushes if s.fmc == "fmc-primary"]
    assert [(s.state, s.error_kind) for s in primary] == [
        ("retrying", "DeviceUnreachableError"),  # wrote the files; the connection died in pmtool
        ("succeeded", None),
    ]
    assert primary[-1].message == RESTARTED_ONLY
    secondary = env.last_push(renewal_id, "fmc-secondary", "ftd-002")
    assert secondary.state == "succeeded" and secondary.message is None  # a plain write and restart
    with Session(env.engine) as db:
        for fmc in FMCS:
            facts = store.push_restart(session=db, renewal_id=renewal_id, fmc=fmc, device="ftd-002")
            assert facts is not None and facts.restarted_at_utc is not None, fmc
            assert facts.restarted_at_utc >= facts.write_started_at_utc
            live = store.push_restart(session=db, renewal_id=renewal_id, fmc=fmc, device="ftd-001")
            assert live is None  # never written by this renewal: generate_certs.pl did

    status = env.sftrenew("status", renewal_id)
    assert status.returncode == 0 and RESTARTED_ONLY in status.stdout, status.stdout
    env.lab.restart_sftunnel("ftd-002")
    assert env.lab.connected("fmc-primary", "ftd-002") and env.lab.connected("fmc-secondary", "ftd-002")


def test_a_push_refused_before_any_write_is_recorded_as_refused(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env({"ftds": 2, "devices": {"ftd-001": {"wrong_password": True}}})
    env.start_worker()
    renewal_id = env.enqueue()
    assert env.wait_finished(renewal_id).state == "partial", env.sftrenew("status", renewal_id).stdout
    for fmc in FMCS:
        refused = env.last_push(renewal_id, fmc, "ftd-001")
        assert (refused.state, refused.error_kind, refused.attempt) == (
            "refused",
            "AuthenticationFailedError",
            1,
        )
        assert refused.message and refused.message.startswith(
            "refused before any write: ftd-001 (route direct)"
        )
        assert env.last_push(renewal_id, fmc, "ftd-002").state == "skipped"
        # What Flower and the result backend show of the failed task says it too.
        assert refused.task_id is not None
        result = _result(env, refused.task_id)
        assert result.state == "FAILURE"
        assert str(result.result).startswith("refused before any write: ftd-001")
    status = env.sftrenew("status", renewal_id)
    lines = [line.split() for line in status.stdout.splitlines() if line.strip().startswith("ftd-001")]
    assert len(lines) == 2 and all(line[1] == "refused" for line in lines), status.stdout
    assert all(line[-1] == "AuthenticationFailedError" for line in lines), status.stdout

    env.lab.set_knobs("ftd-001", wrong_password=False)  # the operator fixed the credential
    retried = env.sftrenew("retry", renewal_id, "--by", "alice")
    assert retried.returncode == 0, retried.stderr
    assert "pushing again to ftd-001" in retried.stdout and "ftd-002" not in retried.stdout
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    for fmc in FMCS:
        last = env.last_push(renewal_id, fmc, "ftd-001")
        assert last.who == "alice" and last.state in ("skipped", "succeeded")
