"""Retries that cannot lie, and Flower as the renewal's live view. Real worker (with its beat), Redis, SQLite,
Flower and the lab.

- a failed push's message sent again while the device is still unreachable FAILS with the reason; once the
  device is reachable, the same message pushes, and the device is verified (a new round, as `retry`);
- a push sent by whoever (Flower's apply, no queue) goes to its device's queue: the worker that got it on
  another queue sends it on and says so; sent again for a device that holds the new files, it checks them;
- Flower: names carry the renewal, step, FMC and device; the task list shows state, retries, exception and
  runtime; `/metrics` needs the password; a worker cannot be shut down through it; the reconciler's quiet
  rounds leave no task behind.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from pipeline import store
from pipeline.settings import load_settings
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import RenewalEnv
from tests.e2e.services import http_get, http_status, wait_until
from workers.app import make_celery

pytestmark = pytest.mark.e2e

LAB = {"ftds": 4, "scenarios": "mixed,expired"}  # ftd-004: tunnel down and no SSH route


def generate_runs(env: RenewalEnv, fmc: str) -> int:
    return len(list(env.lab.file(fmc, "/var/tmp/certs").glob("[0-9]*")))


def operator_app(env: RenewalEnv) -> Celery:
    """The app an operator's process makes (settings from its environment, the inventory included), current,
    so that its router is the one asked."""
    app = make_celery(load_settings(env.env_for("command")))
    app.set_current()
    return app


def final_state(app: Celery, task_id: str, timeout: float = 120) -> str:
    result = AsyncResult(task_id, app=app)
    wait_until(lambda: result.state in ("SUCCESS", "FAILURE"), timeout=timeout, what=task_id)
    return str(result.state)


def flower_post(url: str, auth: tuple[str, str], body: dict[str, Any] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST")
    request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def flower_state(url: str, auth: tuple[str, str], task_id: str) -> str | None:
    try:
        info = json.loads(http_get(f"{url}/api/task/info/{task_id}", auth))
    except urllib.error.HTTPError:
        return None  # Flower has not seen the task yet
    return str(info.get("state"))


def slot_rounds(env: RenewalEnv, renewal_id: str, fmc: str, device: str) -> list[tuple[int, str | None]]:
    """Each push round the device was in, with how its slot settled (None: open)."""
    with store.open_session(env.engine) as db:
        slots = store.slots(session=db, renewal_id=renewal_id, fmc=fmc)
    return [(s.round, s.outcome) for s in slots if s.device == device]


def push_attempts(env: RenewalEnv, renewal_id: str, fmc: str, device: str) -> list[store.StepRun]:
    return [s for s in env.steps(renewal_id) if s.step == "push" and s.fmc == fmc and s.device == device]


def test_a_failed_push_sent_again_fails_then_pushes_and_is_verified(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(LAB, SFTRENEW_RECONCILE_INTERVAL="1")
    url, auth = env.start_flower()
    worker = env.start_worker(beat=True)
    env.wait_flower_sees_workers(url, auth)
    renewal_id = env.enqueue("--accept-stranded", "ftd-004", force=False)
    assert env.wait_finished(renewal_id).state == "partial"
    runs = {fmc: generate_runs(env, fmc) for fmc in ("fmc-primary", "fmc-secondary")}
    app = operator_app(env)
    message = [renewal_id, "fmc-primary", "ftd-004", 1, None]

    # Sent again while ftd-004 is still unreachable: FAILURE, with the reason, in a new round.
    again = app.send_task("sftrenew.push", args=message)
    assert final_state(app, again.id) == "FAILURE"
    assert "ftd-004" in str(AsyncResult(again.id, app=app).result)
    assert env.wait_finished(renewal_id).state == "partial"
    tried = push_attempts(env, renewal_id, "fmc-primary", "ftd-004")
    assert tried[-1].state in ("failed", "refused"), tried[-1]
    assert slot_rounds(env, renewal_id, "fmc-primary", "ftd-004")[-1] == (2, "failed")
    assert tried[-1].error_kind == "DeviceUnreachableError"
    with store.open_session(env.engine) as db:
        retries = store.events_of(session=db, renewal_id=renewal_id, action="retry")
    assert retries and retries[-1].who and again.id in retries[-1].who

    # Reachable now: the same message pushes, and verify (of the round it opened) verifies it.
    env.lab.set_knobs("ftd-004", direct="open")
    fixed = app.send_task("sftrenew.push", args=message)
    assert final_state(app, fixed.id) == "SUCCESS"
    assert env.wait_finished(renewal_id).state == "partial"  # fmc-secondary's ftd-004 was not sent again
    last = push_attempts(env, renewal_id, "fmc-primary", "ftd-004")[-1]
    assert last.state == "succeeded" and last.task_id == fixed.id
    assert slot_rounds(env, renewal_id, "fmc-primary", "ftd-004")[-1] == (3, "succeeded")
    verdicts = [
        s
        for s in env.steps(renewal_id)
        if s.step == "verify" and s.fmc == "fmc-primary" and s.device == "ftd-004"
    ]
    assert verdicts[-1].state == "succeeded"
    assert {fmc: generate_runs(env, fmc) for fmc in runs} == runs  # no second generate_certs.pl

    # Flower's apply, without a queue: Flower reads no inventory, so the push lands on `push`; the worker
    # sends it on to ftd-002's queue (`push.lab`), and there it checks the device, which holds the new files.
    before = push_attempts(env, renewal_id, "fmc-primary", "ftd-002")
    status, body = flower_post(
        f"{url}/api/task/async-apply/sftrenew.push", auth, {"args": [renewal_id, "fmc-primary", "ftd-002", 1]}
    )
    assert status == 200, body
    applied = json.loads(body)["task-id"]
    seen: set[str | None] = set()

    def forwarded() -> bool:
        state = flower_state(url, auth, applied)
        seen.add(state)
        return state == "FORWARDED"

    try:
        wait_until(forwarded, timeout=60, what="the apply forwarded")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; Flower's states: {sorted(map(str, seen))}") from None
    assert AsyncResult(applied, app=app).state == "FORWARDED"  # the result backend says the same
    wait_until(lambda: "sent on to 'push.lab'" in worker.log.read_text(), timeout=30, what="the forward")
    wait_until(
        lambda: (
            len(push_attempts(env, renewal_id, "fmc-primary", "ftd-002")) == len(before) + 1
            and push_attempts(env, renewal_id, "fmc-primary", "ftd-002")[-1].state == "skipped"
        ),
        timeout=60,
        what="the forwarded push's check of ftd-002",
    )
    newest = push_attempts(env, renewal_id, "fmc-primary", "ftd-002")[-1]
    assert newest.task_id != applied and newest.message and "already holds the new files" in newest.message
    assert slot_rounds(env, renewal_id, "fmc-primary", "ftd-002") == [(1, "succeeded")]  # no round opened

    # Flower: names, columns, guarded metrics, no worker control, no reconcile task.
    short = renewal_id[:8]
    tasks = json.loads(http_get(url + "/api/tasks", auth))
    names = {t.get("name") for t in tasks.values()}
    assert f"sftrenew.push[{short} fmc-primary->ftd-004]" in names
    assert f"sftrenew.verify[{short} fmc-primary]" in names
    assert not any(str(n).startswith("sftrenew.reconcile") for n in names), names
    page = http_get(url + "/tasks", auth)
    columns = [
        c for c in ("name", "state", "retries", "exception", "runtime") if f'data-column="{c}"' in page
    ]
    assert columns == ["name", "state", "retries", "exception", "runtime"]
    assert http_status(url + "/metrics") == 401
    assert "flower_events_total" in http_get(url + "/metrics", auth)
    status, body = flower_post(f"{url}/api/worker/shutdown/{next(iter(worker_names(url, auth)))}", auth)
    assert status == 403 and "service manager" in body
    status, _ = flower_post(f"{url}/api/worker/pool/grow/{next(iter(worker_names(url, auth)))}?n=4", auth)
    assert status == 403
    assert worker.alive
    env.stop()


def worker_names(url: str, auth: tuple[str, str]) -> list[str]:
    return list(json.loads(http_get(url + "/api/workers?refresh=0", auth)))
