"""The renewal on Celery, end to end: real Redis, real worker processes, SQLite and PostgreSQL, the lab.

Each test enqueues with the real `sftrenew enqueue`, lets real workers renew the lab's FMC pair over SSH, and
judges by the database of record, the result backend and the lab's own files and tunnels.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from celery.result import AsyncResult
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from pipeline import store
from pipeline.settings import CelerySettings, Settings
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import RenewalEnv
from tests.e2e.services import http_get, http_status, wait_until
from tests.lab.fixtures import RunningLab
from workers.app import make_celery

pytestmark = pytest.mark.e2e


def ca(lab: RunningLab, fmc: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(lab.file(fmc, "/etc/sf/ca_root/cacert.pem").read_bytes())


def generate_runs(lab: RunningLab, fmc: str) -> int:
    return len(list(lab.file(fmc, "/var/tmp/certs").glob("[0-9]*")))


def result_state(env: RenewalEnv, task_id: str) -> str:
    app = make_celery(
        Settings(celery=CelerySettings(broker_url=f"{env.redis.url}/0", result_backend=f"{env.redis.url}/1"))
    )
    state: str = AsyncResult(task_id, app=app).state
    return state


def test_healthy_pair_renews_and_verifies(make_env: MakeEnv) -> None:
    env = make_env()
    before = {fmc: ca(env.lab, fmc) for fmc in ("fmc-primary", "fmc-secondary")}
    env.start_worker()
    # The plan gate: the lab's CAs are fresh, so not due; forcing takes a reason, recorded.
    not_due = env.sftrenew("enqueue", "--pair", "lab")
    assert not_due.returncode == 1, not_due.stderr
    assert "refused: fmc-primary: its CA has" in not_due.stderr and "not due" in not_due.stderr
    no_reason = env.sftrenew("enqueue", "--pair", "lab", "--force")
    assert no_reason.returncode == 2 and "--force and --reason TEXT go together" in no_reason.stderr
    renewal_id = env.enqueue()
    with store.open_session(env.engine) as db:
        forced = store.events_of(session=db, renewal_id=renewal_id, action="force")
    assert len(forced) == 1 and forced[0].detail, forced
    assert forced[0].detail.startswith("e2e test of a fresh lab (fmc-primary ")
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    for fmc, old in before.items():
        assert ca(env.lab, fmc) != old
        assert generate_runs(env.lab, fmc) == 1
    status = env.sftrenew("status", renewal_id)
    assert status.returncode == 0 and "verified" in status.stdout
    for ftd in ("ftd-001", "ftd-002", "ftd-003"):
        env.lab.restart_sftunnel(ftd)
        assert env.lab.connected("fmc-primary", ftd) and env.lab.connected("fmc-secondary", ftd)


def test_expired_pair_reconnects_after_restarts(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env({"ftds": 3, "scenarios": "expired"})
    env.lab.restart_sftunnel("ftd-003")
    assert not env.lab.connected("fmc-primary", "ftd-003")  # the expired CA keeps it out
    env.start_worker()
    renewal_id = env.enqueue()
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    for ftd in ("ftd-001", "ftd-002", "ftd-003"):
        env.lab.restart_sftunnel(ftd)
        assert env.lab.connected("fmc-primary", ftd) and env.lab.connected("fmc-secondary", ftd), ftd


def test_mixed_pair_then_retry_of_the_failed_device(make_env: MakeEnv) -> None:
    env = make_env({"ftds": 4, "scenarios": "mixed,expired"})
    env.start_worker()
    # The plan gate: ftd-004 has no route and its tunnel is down; nobody accepted losing it.
    refused = env.sftrenew("enqueue", "--pair", "lab")
    assert refused.returncode == 1, refused.stderr
    assert "refused: ftd-004 would be stranded" in refused.stderr, refused.stderr
    assert "--accept-stranded ftd-004" in refused.stderr and "ftd-003" not in refused.stderr
    assert "nothing was started or changed" in refused.stderr
    assert "ftd-004: stranded" in refused.stdout  # the plan was printed
    with store.open_session(env.engine) as db:
        assert store.history(session=db) == []
    renewal_id = env.enqueue("--accept-stranded", "ftd-004", "--by", "alice", force=False)
    assert env.enqueue(force=False) == renewal_id  # a second enqueue returns the running renewal
    with store.open_session(env.engine) as db:
        events = store.events_of(session=db, renewal_id=renewal_id)
    assert [(e.action, e.who, e.device) for e in events] == [
        ("enqueue", "alice", None),
        ("accept-stranded", "alice", "ftd-004"),
    ]
    assert events[1].detail and "no SSH route" in events[1].detail
    assert env.wait_finished(renewal_id).state == "partial"
    for fmc in ("fmc-primary", "fmc-secondary"):
        assert env.last_push(renewal_id, fmc, "ftd-002").route == "direct"
        assert env.last_push(renewal_id, fmc, "ftd-002").state == "succeeded"
        assert env.last_push(renewal_id, fmc, "ftd-003").route == "via jump-1"
        assert env.last_push(renewal_id, fmc, "ftd-003").state == "succeeded"
        failed = env.last_push(renewal_id, fmc, "ftd-004")
        assert failed.state == "refused" and failed.error_kind == "DeviceUnreachableError"
        assert failed.task_id and result_state(env, failed.task_id) == "FAILURE"
        verdicts = {s.device: s.state for s in env.steps(renewal_id) if s.step == "verify" and s.device}
        assert verdicts["ftd-004"] == "failed" and verdicts["ftd-002"] == "succeeded"
    runs = {fmc: generate_runs(env.lab, fmc) for fmc in ("fmc-primary", "fmc-secondary")}
    # Monitoring sees the new CAs and the renewal that left ftd-004 behind, once per FMC.
    assert _monitored(env, renewal_id) == ("partial", 2)

    env.lab.set_knobs("ftd-004", direct="open")  # the operator fixed the route
    retried = env.sftrenew("retry", renewal_id, "--device", "ftd-004", "--by", "alice")
    assert retried.returncode == 0, retried.stderr
    assert env.wait_finished(renewal_id).state == "succeeded", env.sftrenew("status", renewal_id).stdout
    assert {fmc: generate_runs(env.lab, fmc) for fmc in runs} == runs  # no second generate_certs.pl
    last = env.last_push(renewal_id, "fmc-primary", "ftd-004")
    assert last.state == "succeeded" and last.who == "alice"
    assert _monitored(env, renewal_id) == ("succeeded", 0)
    env.lab.restart_sftunnel("ftd-004")
    assert env.lab.connected("fmc-primary", "ftd-004") and env.lab.connected("fmc-secondary", "ftd-004")
    _assert_no_secret_in_shell_history(env)


def _monitored(env: RenewalEnv, renewal_id: str) -> tuple[str, float]:
    """`check --json --prometheus FILE` after a renewal: both CAs new (OK), the JSON and the textfile (parsed
    by Prometheus's own parser) agree; the last renewal's state and devices not verified."""
    textfile = env.directory / "sftrenew.prom"
    checked = env.sftrenew("check", "--json", "--prometheus", str(textfile))
    assert checked.returncode == 0, checked.stderr
    doc = json.loads(checked.stdout)
    assert doc["status"] == "OK" and [c["days_left"] > 3000 for c in doc["cas"]] == [True, True]
    (last,) = doc["last_renewals"]
    assert last["renewal"] == renewal_id
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(textfile.read_text())
        for s in family.samples
    }
    assert got[("sftrenew_ca_days_left", (("fmc", "fmc-primary"), ("pair", "lab")))] > 3000
    assert got[("sftrenew_last_renewal_state", (("pair", "lab"), ("state", last["state"])))] == 1
    missing = got[("sftrenew_last_renewal_devices_not_verified", (("pair", "lab"),))]
    assert missing == last["devices_not_verified"]
    assert not list(env.directory.glob("*.prom.*"))  # written whole: no temporary file left
    plain = env.sftrenew("check")
    assert plain.stdout.startswith("SFTRENEW OK - 2 InternalCA(s): 2 ok; soonest lab/fmc-")
    return str(last["state"]), missing


def _assert_no_secret_in_shell_history(env: RenewalEnv) -> None:
    """No `.bash_history` on any lab device (FMCs, FTDs, jump server; any user) holds a password or key
    material: a key's PEM lines, or any 64 characters of a key file's base64 as the product types it."""
    devices = env.lab.fleet.devices.values()
    # Bash writes its history as it exits: read the files once every device's sessions have ended.
    wait_until(lambda: not any(d.endpoint.sessions for d in devices), timeout=30, what="all sessions ended")
    histories = {
        path: path.read_text(errors="replace")
        for device in env.lab.info["devices"]
        for path in Path(device["root"]).rglob(".bash_history")
    }
    assert histories, "no shell history on any lab device: the check would prove nothing"
    secrets_ = {*env.lab.secrets.values(), *_private_key_lines(env)}
    for device in env.lab.info["devices"]:
        for path in Path(device["root"]).rglob("*key.pem"):
            typed = base64.b64encode(path.read_bytes()).decode()
            secrets_ |= {typed[i : i + 64] for i in range(0, len(typed) - 63, 64)}
    leaks = sorted(str(path) for path, text in histories.items() if any(s in text for s in secrets_))
    assert not leaks, f"a password or key material is in {leaks}"  # names the files, never the secret


def test_worker_killed_mid_push_finishes_with_one_regeneration(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(
        {"ftds": 2, "devices": {"ftd-002": {"tunnel": "down", "latency_ms": 150}}, "scenarios": "expired"},
        SFTRENEW_VISIBILITY_TIMEOUT="20",
        SFTRENEW_TASK_TIME_LIMIT="15",
        SFTRENEW_SSH_REGENERATE_TIMEOUT="12",
        SFTRENEW_STALL_AFTER="30",
    )
    first = env.start_worker()
    renewal_id = env.enqueue()
    wait_until(
        lambda: any(
            s.step == "push" and s.device == "ftd-002" and s.state == "started" for s in env.steps(renewal_id)
        ),
        timeout=120,
        what="the push to ftd-002 starting",
    )
    first.kill()
    env.start_worker(beat=True)
    assert env.wait_finished(renewal_id, timeout=300).state == "succeeded", env.sftrenew("status").stdout
    assert generate_runs(env.lab, "fmc-primary") == 1 and generate_runs(env.lab, "fmc-secondary") == 1
    for fmc in ("fmc-primary", "fmc-secondary"):
        folder = f"/ngfw/var/sf/peers/{env.lab.device(fmc)['uuid']}"
        for name in ("cacert.pem", "sftunnel-cert.pem", "sftunnel-key.pem"):
            data = env.lab.file("ftd-002", f"{folder}/{name}").read_bytes()
            assert data.startswith(b"-----BEGIN ") and data.rstrip().endswith(b"-----"), name
        assert not list(env.lab.file("ftd-002", folder).glob(".*.sftrenew-*"))
    env.lab.restart_sftunnel("ftd-002")
    assert env.lab.connected("fmc-primary", "ftd-002")


def test_redis_restart_mid_renewal_is_carried_on_from_the_database(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(
        {
            "ftds": 3,
            "devices": {f"ftd-00{i}": {"tunnel": "down", "latency_ms": 100} for i in (1, 2, 3)},
            "scenarios": "expired",
        },
        SFTRENEW_STALL_AFTER="8",
        SFTRENEW_RECONCILE_INTERVAL="2",
        # One thread: the other pushes wait in Redis, so the restart really loses them.
        SFTRENEW_WORKER_CONCURRENCY="1",
    )
    env.start_worker(beat=True)
    renewal_id = env.enqueue()
    wait_until(
        lambda: any(s.step == "push" for s in env.steps(renewal_id)),
        timeout=120,
        what="the first push starting",
    )
    env.redis.restart()  # every queued message and result is gone
    assert env.wait_finished(renewal_id, timeout=300).state == "succeeded", env.sftrenew("status").stdout
    assert generate_runs(env.lab, "fmc-primary") == 1 and generate_runs(env.lab, "fmc-secondary") == 1
    assert "stalled: sent" in env.logs()


def test_no_secret_in_redis_database_logs_or_flower(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env({"ftds": 2, "devices": {"ftd-002": {"tunnel": "down"}}, "scenarios": "expired"})
    url, auth = env.start_flower()
    try:
        env.start_worker()
        env.wait_flower_sees_workers(url, auth)
        renewal_id = env.enqueue()
        assert env.wait_finished(renewal_id).state == "succeeded"
        assert http_status(url + "/api/tasks") == 401  # no way in without the password
        tasks = json.loads(http_get(url + "/api/tasks", auth))
        names = {t.get("name") for t in tasks.values()}
        short = renewal_id[:8]
        assert f"sftrenew.push[{short} fmc-primary->ftd-002]" in names
        assert f"sftrenew.regenerate[{short} fmc-primary]" in names
        flower_text = http_get(url + "/api/tasks", auth) + http_get(url + "/tasks", auth)
    finally:
        env.stop()

    secrets_ = [*env.lab.secrets.values(), env.artifact_key, env.flower_password]
    key_lines = _private_key_lines(env)
    assert key_lines, "no private key material found to look for: the test would prove nothing"
    redis_blob = b"\n".join(env.redis.keys_and_values())
    database_blob = _database_text(env)
    for where, blob in (
        ("redis", redis_blob.decode(errors="replace")),
        ("database", database_blob),
        ("logs", env.logs()),
        ("flower", flower_text),
    ):
        for secret in secrets_:
            assert secret not in blob, f"a secret is in {where}"
        assert "PRIVATE KEY" not in blob, f"a private key is in {where}"
        assert not any(line in blob for line in key_lines), f"key material is in {where}"


def _private_key_lines(env: RenewalEnv) -> set[str]:
    """Base64 lines of every private key on the lab's devices (64 characters: full PEM lines)."""
    lines: set[str] = set()
    for device in env.lab.info["devices"]:
        for path in Path(device["root"]).rglob("*key.pem"):
            lines |= {line for line in path.read_text().splitlines() if len(line) == 64}
    return lines


def _database_text(env: RenewalEnv) -> str:
    """Every column of every row, as text, except the sealed data of secret artifacts."""
    chunks: list[str] = []
    with env.engine.connect() as connection:
        for table in ("renewal", "renewal_fmc", "step_run", "artifact", "push_slot"):
            for row in connection.execute(text(f"SELECT * FROM {table}")).mappings():  # noqa: S608 - our names
                secret = table == "artifact" and bool(row["secret"])
                for column, value in row.items():
                    if secret and column == "data":
                        continue
                    chunks.append(value.decode(errors="replace") if isinstance(value, bytes) else str(value))
    return "\n".join(chunks)


def test_plan_and_check_against_the_lab(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env({"ftds": 4, "scenarios": "mixed,expired"})
    plan = env.sftrenew("plan", "--pair", "lab")
    assert plan.returncode == 1, plan.stderr  # one device would be stranded
    assert "ftd-004: stranded" in plan.stdout and "ftd-003: pushed over SSH (via jump-1)" in plan.stdout
    assert "ftd-001: pushed by generate_certs.pl over the live tunnel" in plan.stdout
    check = env.sftrenew("check")
    assert check.returncode == 2 and check.stdout.count("CRITICAL lab/") == 2
    assert generate_runs(env.lab, "fmc-primary") == 0  # read-only
    healthy = make_sqlite_env({"ftds": 1})
    ok = healthy.sftrenew("check", "--warn-days", "90")
    assert ok.returncode == 0 and ok.stdout.count("OK lab/") == 2
    warn = healthy.sftrenew("check", "--warn-days", "4000", "--crit-days", "10")
    assert warn.returncode == 1 and "WARNING" in warn.stdout
