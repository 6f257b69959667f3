"""Faults that held and must keep holding (issue 11): each injects one, and the renewal carries on to the end
with one generate_certs.pl run per FMC and every device holding a consistent set.

Real `sftrenew` commands, real workers on a private Redis, SQLite or PostgreSQL, the lab over SSH. The other
faults of the issue are tested beside the behaviour they break: a worker killed mid-push and a Redis restarted
empty in `test_renewal.py`, a worker killed mid-regenerate in `test_record_truth.py`, a connection dropped
mid-write on the direct route in `tests/lab/test_steps.py`.

"Consistent" is checked on the devices' own files: for each FMC, every peer (each FTD and the other FMC) holds
the CA the FMC holds now (not the one it held before), a certificate that CA issued, and that certificate's
key; and each FTD's tunnels come back after a restart of its sftunnel.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from pipeline import store
from pipeline.certs import CertFacts, KeyFacts, issued_by, key_matches
from pipeline.devicepaths import CA_CERT, PEER_CA, PEER_CERT, PEER_KEY, PUSHED_FILES, certs_pushed, peer_dir
from pipeline.store import StepRun
from tests.e2e.conftest import MakeEnv, _make_env, engine_for
from tests.e2e.renewal_env import RenewalEnv
from tests.e2e.services import PrivatePostgres, RedisServer, wait_until
from tests.e2e.test_record_truth import FAST_RECOVERY, settled_steps
from tests.e2e.test_renewal import generate_runs
from tests.lab.fixtures import MakeLab

pytestmark = pytest.mark.e2e

FMCS = ("fmc-primary", "fmc-secondary")
PRIMARY = "fmc-primary"


# ------------------------------------------------ what every test checks at the end


def ca_pems(env: RenewalEnv) -> dict[str, bytes]:
    """The CA each FMC holds now."""
    return {fmc: env.lab.file(fmc, CA_CERT).read_bytes() for fmc in FMCS}


def ftds(env: RenewalEnv) -> list[str]:
    return [d["name"] for d in env.lab.info["devices"] if d["role"] == "ftd"]


def peer_files(env: RenewalEnv, peer: str, fmc: str) -> dict[str, bytes]:
    """The three files `peer` holds for `fmc`."""
    folder = peer_dir(env.lab.device(fmc)["uuid"])
    return {name: env.lab.file(peer, f"{folder}/{name}").read_bytes() for name in PUSHED_FILES}


def status(env: RenewalEnv, renewal_id: str) -> str:
    return env.sftrenew("status", renewal_id).stdout


def assert_renewed_once_and_consistent(env: RenewalEnv, renewal_id: str, before: dict[str, bytes]) -> None:
    """One generate_certs.pl run per FMC, whose CA the record names; every peer consistent on it."""
    now = ca_pems(env)
    with store.open_session(env.engine) as db:
        recorded = {row.fmc: row.ca_after_sha256 for row in store.fmcs_of(session=db, renewal_id=renewal_id)}
    for fmc in FMCS:
        assert generate_runs(env.lab, fmc) == 1, (
            f"{fmc}: {generate_runs(env.lab, fmc)} generate_certs.pl runs"
        )
        assert now[fmc] != before[fmc], f"{fmc} still holds the CA it held before"
        assert recorded[fmc] == CertFacts.from_pem(now[fmc]).sha256, f"{fmc}: the record names another CA"
        other = next(f for f in FMCS if f != fmc)
        for peer in [*ftds(env), other]:
            held = peer_files(env, peer, fmc)
            cert, key = CertFacts.from_pem(held[PEER_CERT]), KeyFacts.from_pem(held[PEER_KEY])
            assert held[PEER_CA] == now[fmc], f"{peer} does not hold {fmc}'s new CA"
            assert issued_by(held[PEER_CERT], now[fmc]), (
                f"{peer}'s certificate for {fmc} is not of its new CA"
            )
            assert key_matches(cert, key), f"{peer}'s key for {fmc} does not match its certificate"
    for ftd in ftds(env):
        env.lab.restart_sftunnel(ftd)
        for fmc in FMCS:
            assert env.lab.connected(fmc, ftd), f"{ftd} did not reconnect to {fmc} on its files"


def pushes(steps: Sequence[StepRun], fmc: str, device: str) -> list[StepRun]:
    return sorted((s for s in steps if s.step == "push" and s.fmc == fmc and s.device == device), key=_id)


def _id(step: StepRun) -> int:
    return step.id or 0


# ------------------------------------------------ 1. a worker killed before generate_certs.pl


def intent_recorded(env: RenewalEnv, renewal_id: str, fmc: str) -> bool:
    with store.open_session(env.engine) as db:
        return store.renewal_fmc(session=db, renewal_id=renewal_id, fmc=fmc).regen_intent_at_utc is not None


def test_worker_killed_just_before_generate_certs_pl_runs_it_once(make_sqlite_env: MakeEnv) -> None:
    """The worker is killed the moment the regenerate step has recorded its intent to run generate_certs.pl,
    before the script starts (the FMC answers each line after 300 ms, and two lines come between). The FMC
    still holds the backed-up CA, so the task that carries the step on (the killed message delivered again
    after the visibility timeout, or the reconciler's) runs generate_certs.pl: a recorded intent adopts a
    changed CA, never an unchanged one, and the script runs once."""
    env = make_sqlite_env(
        {"ftds": 2, "devices": {PRIMARY: {"latency_ms": 300}, "ftd-002": {"tunnel": "down"}}}, **FAST_RECOVERY
    )
    before = ca_pems(env)
    first = env.start_worker()
    renewal_id = env.enqueue()
    wait_until(
        lambda: intent_recorded(env, renewal_id, PRIMARY),
        timeout=120,
        every=0.02,
        what="the intent to run generate_certs.pl recorded",
    )
    first.kill()
    fmc_sessions = env.lab.fleet.devices[PRIMARY].endpoint.sessions
    wait_until(lambda: not fmc_sessions, timeout=30, what="the FMC's session ending with its worker")
    assert generate_runs(env.lab, PRIMARY) == 0, "the kill came too late: generate_certs.pl had started"
    assert ca_pems(env)[PRIMARY] == before[PRIMARY]

    env.start_worker(beat=True)
    finished = env.wait_finished(renewal_id, timeout=200)
    steps = settled_steps(env, renewal_id)
    assert finished.state == "succeeded", status(env, renewal_id)
    regenerations = [s.state for s in steps if s.step == "regenerate" and s.fmc == PRIMARY]
    assert regenerations[0] == "interrupted", regenerations
    assert [s for s in regenerations[1:] if s != "ignored"] == ["succeeded"], regenerations
    assert_renewed_once_and_consistent(env, renewal_id, before)


# ------------------------------------------------ 2. Redis restarted from its append-only file


@pytest.mark.parametrize("redis_server", ["append-only"], indirect=True)
def test_redis_restarted_from_its_append_only_file_mid_renewal(make_sqlite_env: MakeEnv) -> None:
    """As the empty restart of `test_renewal.py`, but Redis comes back from its append-only file: the queued
    pushes, the deliveries not yet acknowledged and the results are back, and the renewal carries on."""
    env = make_sqlite_env(
        {
            "ftds": 3,
            "devices": {f"ftd-00{i}": {"tunnel": "down", "latency_ms": 100} for i in (1, 2, 3)},
            "scenarios": "expired",
        },
        SFTRENEW_STALL_AFTER="8",
        SFTRENEW_RECONCILE_INTERVAL="2",
        # One thread: the other pushes wait in Redis, so the restart must bring them back.
        SFTRENEW_WORKER_CONCURRENCY="1",
    )
    before = ca_pems(env)
    env.start_worker(beat=True)
    renewal_id = env.enqueue()
    wait_until(
        lambda: any(s.step == "push" for s in env.steps(renewal_id)),
        timeout=120,
        what="the first push starting",
    )
    broker = redis.Redis(port=env.redis.port, db=0)
    assert broker.dbsize() > 0
    env.redis.restart()  # killed (SIGKILL), then started on the same folder: it reads its append-only file
    assert broker.dbsize() > 0, "the broker came back empty: the append-only file was not read"
    finished = env.wait_finished(renewal_id, timeout=240)
    settled_steps(env, renewal_id)
    assert finished.state == "succeeded", status(env, renewal_id)
    assert_renewed_once_and_consistent(env, renewal_id, before)


# ------------------------------------------------ 3. PostgreSQL down for 20 s mid-push


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, which it may stop (the machine's own serves other tests)."""
    bin_dir = PrivatePostgres.binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server installed (initdb, pg_ctl): apt-get install postgresql")
    problem = PrivatePostgres.missing_user()
    if problem is not None:
        pytest.skip(problem)
    server = PrivatePostgres(bin_dir)
    try:
        server.create()
        yield server
    finally:
        server.remove()


@pytest.fixture
def make_private_postgres_env(
    make_lab: MakeLab, redis_server: RedisServer, private_postgres: PrivatePostgres, tmp_path: Path
) -> Iterator[MakeEnv]:
    engine = engine_for(private_postgres.url)
    try:
        yield from _make_env(make_lab, redis_server, (engine, private_postgres.url), tmp_path)
    finally:
        engine.dispose()


def test_postgresql_down_for_20_seconds_mid_push(
    make_private_postgres_env: MakeEnv, private_postgres: PrivatePostgres
) -> None:
    """The database server stops as if it crashed (`pg_ctl stop -m immediate`: every connection cut, new
    ones refused) while the pushes run, and starts again 20 s later. Attempts that could not record their end
    are closed as interrupted when their push is sent again; none stays `started`."""
    env = make_private_postgres_env(
        {"ftds": 3, "devices": {f"ftd-00{i}": {"tunnel": "down", "latency_ms": 150} for i in (1, 2, 3)}},
        SFTRENEW_STALL_AFTER="8",
        SFTRENEW_RECONCILE_INTERVAL="2",
    )
    before = ca_pems(env)
    env.start_worker(beat=True)
    renewal_id = env.enqueue()
    wait_until(
        lambda: any(s.step == "push" and s.device == "ftd-001" for s in env.steps(renewal_id)),
        timeout=120,
        what="the pushes starting",
    )
    private_postgres.stop()
    time.sleep(20)  # the outage itself
    private_postgres.start()
    finished = env.wait_finished(renewal_id, timeout=240)
    steps = settled_steps(env, renewal_id)
    assert finished.state == "succeeded", status(env, renewal_id)
    # The attempt under way when the server stopped could not record its end (nor, perhaps, its intent to
    # write): closed as interrupted when the reconciler sent its push again, which then finished it.
    attempts = [s.state for s in pushes(steps, PRIMARY, "ftd-001")]
    assert attempts[0] == "interrupted" and attempts[-1] == "succeeded", attempts
    for fmc in FMCS:
        for ftd in ftds(env):
            assert pushes(steps, fmc, ftd)[-1].state in ("succeeded", "skipped"), status(env, renewal_id)
    assert_renewed_once_and_consistent(env, renewal_id, before)


# ------------------------------------------------ 4. the SSH connection cut inside the key upload


def _session_bytes(env: RenewalEnv, device: str) -> list[int]:
    """The channel bytes of each open session on `device`, as its `drop_after_bytes` knob counts them."""

    async def read() -> list[int]:
        return [s.bytes_counted for s in env.lab.fleet.devices[device].endpoint.sessions]

    return env.lab.runner.call(read())


@pytest.mark.parametrize("route", ["direct", "via jump-1"])
def test_ssh_cut_inside_the_key_upload(make_sqlite_env: MakeEnv, route: str) -> None:
    """The FTD's connection is cut while the push types its write: the one command that carries the base64
    of the three new files, sftunnel-key.pem among them (the knob is set once the copies of the old files are
    on the device, the command just before the write, to cut a few bytes later). Bash runs a command only
    once its last line arrived, and the renames come after every temp file checked out: each file is old or
    new, whole; the next attempt writes the set from the start.

    Direct: the next attempt is the second direct one, and the renewal succeeds. Through the jump server (the
    direct route refused): the jump route had its one turn, so the device's push fails for the round, the
    renewal ends partial, and `sftrenew retry` pushes it again."""
    ftd, direct = "ftd-002", route == "direct"
    knobs: dict[str, object] = {"tunnel": "down", "latency_ms": 100}
    if not direct:
        knobs["direct"] = "refuse"
    env = make_sqlite_env(
        {"ftds": 2, "devices": {ftd: knobs}}, SFTRENEW_RETRY_BACKOFF="2", SFTRENEW_RETRY_BACKOFF_MAX="2"
    )
    before, old = ca_pems(env), peer_files(env, ftd, PRIMARY)
    folder = env.lab.file(ftd, peer_dir(env.lab.device(PRIMARY)["uuid"]))
    env.start_worker()
    renewal_id = env.enqueue()

    def copies_made() -> bool:
        return len(list(folder.glob("*.sftrenew-*.bak"))) == len(old)

    wait_until(copies_made, timeout=120, every=0.005, what="the copies of the old files, before the write")
    # Cut within the next bytes: the write, which follows the copies at once, is the next command. Where
    # exactly it falls depends on how fast this poll saw the copies, so what follows asserts only what must
    # hold wherever it falls (the lab test test_connection_cut_mid_write_* places cuts byte by byte).
    (counted,) = _session_bytes(env, ftd)
    env.lab.set_knobs(ftd, drop_after_bytes=counted + 20)
    wait_until(lambda: not _session_bytes(env, ftd), timeout=30, what="the connection cut")
    env.lab.set_knobs(ftd, drop_after_bytes=None)

    # What the cut left: each file old or new, whole (bash runs the write only once its last line arrived;
    # the renames come after every temp file checked out).
    new_key = env.lab.file(PRIMARY, certs_pushed(env.lab.device(ftd)["uuid"], PEER_KEY)).read_bytes()
    held = peer_files(env, ftd, PRIMARY)
    assert held[PEER_KEY] in (old[PEER_KEY], new_key), "a partial key file"

    finished = env.wait_finished(renewal_id)
    cut = next(s for s in pushes(env.steps(renewal_id), PRIMARY, ftd) if s.route == route)
    assert cut.error_kind == "DeviceUnreachableError", cut
    if direct:
        assert cut.state == "retrying"
    else:
        assert (cut.state, finished.state) == ("failed", "partial"), status(env, renewal_id)
        assert pushes(env.steps(renewal_id), "fmc-secondary", ftd)[-1].state == "succeeded"
        retried = env.sftrenew("retry", renewal_id, "--device", ftd)
        assert retried.returncode == 0, retried.stderr
        finished = env.wait_finished(renewal_id)
    steps = settled_steps(env, renewal_id)
    assert finished.state == "succeeded", status(env, renewal_id)
    last = pushes(steps, PRIMARY, ftd)[-1]
    assert (last.state, last.route) == ("succeeded", route)
    assert not list(folder.glob(".*.sftrenew-*")), "the write after the cut left temp files"
    assert_renewed_once_and_consistent(env, renewal_id, before)


# ------------------------------------------------ 5. ten enqueues at once

#: The lab's CAs are fresh: the plan gate refuses them as not due unless forced, with a reason.
FORCED = ("--force", "--reason", "e2e test of a fresh lab")


def test_ten_enqueues_at_once_start_one_renewal(make_env: MakeEnv) -> None:
    """Ten `sftrenew enqueue --pair lab` at once: one renewal is started; the nine others exit 0 and name it
    (docs/cli.md: "if one is already running for that pair, prints that one's id instead")."""
    env = make_env({"ftds": 2, "devices": {"ftd-002": {"tunnel": "down"}}})
    before = ca_pems(env)
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: env.sftrenew("enqueue", "--pair", "lab", *FORCED), range(10)))
    for result in results:
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
    ids = {r.stdout.splitlines()[-2] for r in results}
    assert len(ids) == 1, ids
    said = sorted(r.stdout.splitlines()[-1].split(":")[0] for r in results)
    assert said == ["already running"] * 9 + ["enqueued"], said
    with store.open_session(env.engine) as db:
        assert [r.id for r in store.history(session=db)] == list(ids)

    env.start_worker()
    (renewal_id,) = ids
    finished = env.wait_finished(renewal_id)
    settled_steps(env, renewal_id)
    assert finished.state == "succeeded", status(env, renewal_id)
    assert_renewed_once_and_consistent(env, renewal_id, before)


# ------------------------------------------------ 6. a worker killed while a push waits to retry


def test_worker_killed_while_a_push_waits_for_its_retry(make_sqlite_env: MakeEnv) -> None:
    """ftd-002's direct route is refused: its first attempt fails, and its retry waits 4 to 8 s (Celery's
    countdown, the message held by the worker). The worker is killed during that wait; a new one takes the
    push over and ends it through the jump server. Whichever comes first carries it on: the reconciler's new
    push (it starts again at attempt 1, the direct route) or the killed retry's message, which Redis gives
    back only after the visibility timeout and kombu's restore sweep (every 100 s by default); the other
    finds the slot settled. Nothing stays `started`."""
    env = make_sqlite_env(
        {"ftds": 2, "devices": {"ftd-002": {"tunnel": "down", "direct": "refuse"}}},
        **FAST_RECOVERY,
        SFTRENEW_RETRY_BACKOFF="8",
        SFTRENEW_RETRY_BACKOFF_MAX="8",
    )
    before = ca_pems(env)
    first = env.start_worker()
    renewal_id = env.enqueue()
    wait_until(
        lambda: [s.state for s in pushes(env.steps(renewal_id), PRIMARY, "ftd-002")] == ["retrying"],
        timeout=120,
        what="ftd-002's first push attempt failing",
    )
    first.kill()
    assert [s.state for s in pushes(env.steps(renewal_id), PRIMARY, "ftd-002")] == ["retrying"], (
        "the kill came too late: the retry had started"
    )
    env.start_worker(beat=True)
    finished = env.wait_finished(renewal_id, timeout=200)
    steps = settled_steps(env, renewal_id)
    assert finished.state == "succeeded", status(env, renewal_id)
    attempts = pushes(steps, PRIMARY, "ftd-002")
    assert attempts[0].route == "direct" and attempts[0].state == "retrying"
    assert (attempts[-1].state, attempts[-1].route) == ("succeeded", "via jump-1"), status(env, renewal_id)
    assert not any(s.state == "started" for s in steps)
    assert_renewed_once_and_consistent(env, renewal_id, before)
