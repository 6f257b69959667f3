"""Push rounds and regeneration takeovers on real databases (a fresh SQLite file and a fresh PostgreSQL
database per test, on both), and the upgrade that brought them (0001 -> 0002) on a database with history.

What must hold with Celery's state gone: a round opens once however often its task is delivered, every slot
settles once, exactly one settler learns the round is complete (so verify is enqueued once), and a
regeneration claim held by a dead task can be taken, by one task, while a live one cannot be.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, Table, inspect
from sqlmodel import Session

from pipeline import flow, store
from pipeline.store.schema import alembic_config, script_directory
from tasks import retrying
from tests.e2e.conftest import T0, new_renewal, race

pytestmark = pytest.mark.e2e

FTDS = ("ftd-1", "ftd-2", "ftd-3")
RACERS = 6
CERT = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
CERT_SHA256 = hashlib.sha256(CERT).hexdigest()


def _open(session: Session, rid: str, round_: int, devices: Sequence[str] = FTDS, fmc: str = "fmc-a") -> bool:
    return store.open_push_round(
        session=session, renewal_id=rid, fmc=fmc, round=round_, devices=devices, now=T0
    )


def _settle(
    session: Session, rid: str, round_: int, device: str, outcome: store.SlotOutcome = "succeeded"
) -> bool:
    return store.settle_push(
        session=session, renewal_id=rid, fmc="fmc-a", round=round_, device=device, outcome=outcome,
        now=T0 + timedelta(minutes=round_),
    )  # fmt: skip


def _claim(session: Session, rid: str, round_: int, fmc: str = "fmc-a") -> bool:
    return store.claim_verify(session=session, renewal_id=rid, fmc=fmc, round=round_)


def _rounds(engine: Engine, rid: str, fmc: str = "fmc-a") -> tuple[int, int]:
    """(push_round, verify_round) as a new session reads them."""
    with Session(engine) as session:
        row = store.renewal_fmc(session=session, renewal_id=rid, fmc=fmc)
        return row.push_round, row.verify_round


def _settler(rid: str, round_: int, devices: Sequence[str]) -> Callable[[Session], bool]:
    """Work for `race`: each call settles the next device's slot (ftd-0's push failed, the others' not)."""
    left = iter(devices)
    lock = threading.Lock()

    def settle(session: Session) -> bool:
        with lock:
            device = next(left)
        return _settle(session, rid, round_, device, "failed" if device == "ftd-0" else "succeeded")

    return settle


# ---------------------------------------------------------------- the fan-in


def test_of_n_concurrent_settles_exactly_one_claims_verify(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    """Every round, one task per device settles its slot at the same moment, each on its own connection."""
    devices = [f"ftd-{n}" for n in range(RACERS)]
    engines = [engine, *(make_twin(engine) for _ in range(RACERS - 1))]
    with Session(engine) as session:
        rid = new_renewal(session).id
    for round_ in (1, 2, 3):
        with Session(engine) as session:
            assert _open(session, rid, round_, devices)
        results = race(engines, _settler(rid, round_, devices))
        assert results.count(True) == 1, results
        assert results.count(False) == RACERS - 1
        assert _rounds(engine, rid) == (round_, round_)
        with Session(engine) as session:
            settled = store.slots(session=session, renewal_id=rid, fmc="fmc-a", round=round_)
            assert [s.device for s in settled] == devices
            assert all(s.settled_at_utc == T0 + timedelta(minutes=round_) for s in settled)
            assert [s.outcome for s in settled].count("failed") == 1
            assert store.unsettled(session=session, renewal_id=rid, fmc="fmc-a", round=round_) == []
            assert not _claim(session, rid, round_)  # claimed already: the reconciler finds nothing to do


def test_a_second_settle_of_a_slot_changes_nothing(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        _open(session, rid, 1, ("ftd-1", "ftd-2"))
        assert not _settle(session, rid, 1, "ftd-1", "succeeded")
        assert not _settle(session, rid, 1, "ftd-1", "failed")  # redelivered, with another outcome
        (first,) = store.slots(session=session, renewal_id=rid, fmc="fmc-a", round=1)[:1]
        assert (first.outcome, first.settled_at_utc) == ("succeeded", T0 + timedelta(minutes=1))
        one = store.slot(session=session, renewal_id=rid, fmc="fmc-a", round=1, device="ftd-1")
        assert one is not None and (one.outcome, one.settled_at_utc) == (first.outcome, first.settled_at_utc)
        open_one = store.slot(session=session, renewal_id=rid, fmc="fmc-a", round=1, device="ftd-2")
        assert open_one is not None and open_one.settled_at_utc is None
        assert store.slot(session=session, renewal_id=rid, fmc="fmc-a", round=2, device="ftd-1") is None
        assert store.unsettled(session=session, renewal_id=rid, fmc="fmc-a", round=1) == ["ftd-2"]
        assert _settle(session, rid, 1, "ftd-2", "skipped")
        assert not _settle(session, rid, 1, "ftd-2", "skipped")  # the claimer redelivered: no second verify
        with pytest.raises(LookupError, match="no slot"):
            _settle(session, rid, 1, "ftd-9")
        with pytest.raises(LookupError, match="no slot"):
            _settle(session, rid, 2, "ftd-1")
        with pytest.raises(LookupError, match="no FMC"):
            store.settle_push(
                session=session, renewal_id=rid, fmc="fmc-x", round=1, device="ftd-1", outcome="failed",
                now=T0,
            )  # fmt: skip
        with pytest.raises(ValueError, match="settles as one of"):
            _settle(session, rid, 1, "ftd-1", "retrying")  # type: ignore[arg-type]  # what a caller may pass
    assert _rounds(engine, rid) == (1, 1)


def test_a_round_opens_once_however_often_its_task_is_delivered(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
    engines = [engine, make_twin(engine), make_twin(engine)]
    assert sorted(race(engines, lambda session: _open(session, rid, 1))) == [False, False, True]
    with Session(engine) as session:
        assert not _open(session, rid, 1, ("ftd-7",))  # a late twin with other devices: ignored
        assert store.unsettled(session=session, renewal_id=rid, fmc="fmc-a", round=1) == list(FTDS)
        with pytest.raises(ValueError, match="before round 2"):
            _open(session, rid, 3)
        for bad_round, bad_devices in ((0, FTDS), (2, ("ftd-1", "ftd-1")), (2, ("",))):
            with pytest.raises(ValueError, match=r"numbered from 1|each device once|1 to 100"):
                _open(session, rid, bad_round, bad_devices)
        with pytest.raises(LookupError):
            _open(session, rid, 1, fmc="fmc-x")
        assert _open(session, rid, 2, ("ftd-2",))
        assert not _open(session, rid, 1)  # an older round, redelivered after a newer one opened
    assert _rounds(engine, rid) == (2, 0)
    assert _rounds(engine, rid, "fmc-b") == (0, 0)


def test_round_two_retries_the_devices_round_one_failed(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        _open(session, rid, 1)
        outcomes: list[store.SlotOutcome] = ["succeeded", "failed", "skipped"]
        claims = [
            _settle(session, rid, 1, device, outcome) for device, outcome in zip(FTDS, outcomes, strict=True)
        ]
        assert claims == [False, False, True]
        failed = [
            s.device
            for s in store.slots(session=session, renewal_id=rid, fmc="fmc-a")
            if s.outcome == "failed"
        ]
        assert failed == ["ftd-2"]
        assert _open(session, rid, 2, failed)
        assert not store.round_complete(session=session, renewal_id=rid, fmc="fmc-a", round=2)
        assert store.unsettled(session=session, renewal_id=rid, fmc="fmc-a", round=2) == ["ftd-2"]
        assert not _claim(session, rid, 2)  # a slot is open
        assert not _settle(session, rid, 1, "ftd-2", "succeeded")  # round 1's task, late: settled already
        assert _settle(session, rid, 2, "ftd-2", "succeeded")
        assert store.round_complete(session=session, renewal_id=rid, fmc="fmc-a", round=2)
        every = store.slots(session=session, renewal_id=rid, fmc="fmc-a")
        assert [(s.round, s.device, s.outcome) for s in every] == [
            (1, "ftd-1", "succeeded"), (1, "ftd-2", "failed"), (1, "ftd-3", "skipped"),
            (2, "ftd-2", "succeeded"),
        ]  # fmt: skip
    assert _rounds(engine, rid) == (2, 2)


def test_a_retry_planned_for_a_round_another_opened_first_goes_into_the_next(engine: Engine) -> None:
    """Two failed devices' pushes delivered again at once (or a retry beside one) each plan round 2 from the
    record before either opens it; it opens for one. The other's device, not held by that round, goes into
    round 3, so it has a slot to push in; a device the first round holds is left to it."""
    with Session(engine) as session:
        row = new_renewal(session)
        _open(session, row.id, 1)
        for device in FTDS:
            _settle(session, row.id, 1, device, "failed")
        first = retrying.open_rounds(
            session, row, [flow.RetryRound("fmc-a", 2, ("ftd-1",))], who="task a", now=T0
        )
        assert first.rounds == (flow.RetryRound("fmc-a", 2, ("ftd-1",)),)
        # Planned before `first` opened round 2, from the same record: round 2 for ftd-1 and ftd-2.
        second = retrying.open_rounds(
            session, row, [flow.RetryRound("fmc-a", 2, ("ftd-1", "ftd-2"))], who="task b", now=T0
        )
        assert second.rounds == (flow.RetryRound("fmc-a", 3, ("ftd-2",)),)
        assert (second.round_of("fmc-a", "ftd-1"), second.round_of("fmc-a", "ftd-2")) == (2, 3)
        assert second.round_of("fmc-a", "ftd-3") is None
        open_slots = [
            (s.round, s.device)
            for s in store.slots(session=session, renewal_id=row.id, fmc="fmc-a")
            if s.settled_at_utc is None
        ]
        assert open_slots == [(2, "ftd-1"), (3, "ftd-2")]
        retries = [
            e.detail for e in store.events_of(session=session, renewal_id=row.id) if e.action == "retry"
        ]
        assert retries == ["round 2: ftd-1", "round 3: ftd-2"]


def test_only_the_newest_round_claims_its_verify(engine: Engine) -> None:
    """A round superseded before it completed is verified by the round that superseded it."""
    with Session(engine) as session:
        rid = new_renewal(session).id
        _open(session, rid, 1, ("ftd-1",))
        _open(session, rid, 2, ("ftd-1",))
        assert not _settle(session, rid, 1, "ftd-1")
        assert store.round_complete(session=session, renewal_id=rid, fmc="fmc-a", round=1)
        assert not _claim(session, rid, 1)
        assert _settle(session, rid, 2, "ftd-1")
    assert _rounds(engine, rid) == (2, 2)


def test_an_empty_round_is_complete_and_its_verify_claimed_once(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        assert not _claim(session, rid, 1)  # not opened yet
        assert not store.round_complete(session=session, renewal_id=rid, fmc="fmc-a", round=1)
        assert _open(session, rid, 1, ())
        assert store.round_complete(session=session, renewal_id=rid, fmc="fmc-a", round=1)
        assert store.unsettled(session=session, renewal_id=rid, fmc="fmc-a", round=1) == []
        assert store.slots(session=session, renewal_id=rid, fmc="fmc-a") == []
        assert not _claim(session, rid, 2)  # a round that was never opened
        with pytest.raises(LookupError):
            _claim(session, rid, 1, fmc="fmc-x")
    engines = [engine, make_twin(engine), make_twin(engine)]
    assert sorted(race(engines, lambda session: _claim(session, rid, 1))) == [False, False, True]
    assert _rounds(engine, rid) == (1, 1)


# ---------------------------------------------------------------- regeneration: taking a dead task's claim


def test_a_claim_is_taken_over_only_when_stale_and_not_done(engine: Engine) -> None:
    minutes = [T0 + timedelta(minutes=m) for m in range(61)]
    with Session(engine) as session:
        rid = new_renewal(session).id

        def take(token: str, stale_before: int, now: int, fmc: str = "fmc-a") -> bool:
            return store.take_over_regeneration(
                session=session, renewal_id=rid, fmc=fmc, token=token, stale_before=minutes[stale_before],
                now=minutes[now],
            )  # fmt: skip

        assert not take("task-2", 0, 1)  # nobody holds it: claim_regeneration makes the first claim
        assert store.claim_regeneration(session=session, renewal_id=rid, fmc="fmc-a", token="task-1", now=T0)
        assert not take("task-2", 0, 1)  # taken at T0, which is not before T0: fresh
        assert take("task-2", 10, 10)
        assert take("task-2", 10, 11)  # the holder itself, redelivered
        assert not take("task-3", 9, 12)  # task-2 took it at minute 10: fresh again
        assert not store.claim_regeneration(
            session=session, renewal_id=rid, fmc="fmc-a", token="task-1", now=T0
        )
        row = store.renewal_fmc(session=session, renewal_id=rid, fmc="fmc-a")
        assert (row.regen_token, row.regen_claimed_at_utc, row.regen_taken_at_utc) == (
            "task-2",
            T0,
            minutes[10],
        )
        assert take("task-3", 30, 30)
        store.record_regeneration(
            session=session, renewal_id=rid, fmc="fmc-a", ca_after_sha256="b" * 64, now=T0
        )
        assert not take("task-4", 60, 60)  # done: nothing to take
        with pytest.raises(LookupError):
            take("task-4", 60, 60, fmc="fmc-x")
        with pytest.raises(ValueError, match="needs a token"):
            take("", 60, 60)
        with pytest.raises(ValueError, match="naive"):
            store.take_over_regeneration(
                session=session, renewal_id=rid, fmc="fmc-b", token="t", stale_before=T0.replace(tzinfo=None),
                now=T0,
            )  # fmt: skip


def test_racing_takers_of_a_stale_claim_one_wins(
    engine: Engine, make_twin: Callable[[Engine], Engine]
) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
        store.claim_regeneration(session=session, renewal_id=rid, fmc="fmc-a", token="dead", now=T0)
    engines = [engine, make_twin(engine), make_twin(engine)]
    tokens = iter(["task-1", "task-2", "task-3"])
    lock = threading.Lock()
    later = T0 + timedelta(hours=1)

    def take(session: Session) -> bool:
        with lock:
            token = next(tokens)
        return store.take_over_regeneration(
            session=session, renewal_id=rid, fmc="fmc-a", token=token, stale_before=later, now=later
        )

    assert sorted(race(engines, take)) == [False, False, True]
    with Session(engine) as session:
        assert store.renewal_fmc(session=session, renewal_id=rid, fmc="fmc-a").regen_token != "dead"


# ---------------------------------------------------------------- the upgrade keeps history


def _write_history_at_0001(engine: Engine) -> None:
    """A renewal as the 0001 schema held it, written through that schema's own tables (reflected)."""
    meta = MetaData()
    names = ("renewal", "renewal_fmc", "step_run", "artifact")
    with engine.begin() as connection, warnings.catch_warnings():
        # SQLite cannot reflect the expression index (uq_step_run_attempt); inserting needs no index.
        warnings.filterwarnings("ignore", ".*expression-based index")
        table = {name: Table(name, meta, autoload_with=connection) for name in names}
        connection.execute(table["renewal"].insert(), [{
            "id": "r-old", "pair": "dc1", "requested_by": "ops", "requested_at_utc": T0, "state": "running",
            "active_pair": "dc1", "last_progress_utc": T0,
        }])  # fmt: skip
        connection.execute(table["renewal_fmc"].insert(), [
            {"renewal_id": "r-old", "fmc": "fmc-a", "role": "primary", "state": "running",
             "regen_token": "task-1", "regen_claimed_at_utc": T0},
            {"renewal_id": "r-old", "fmc": "fmc-b", "role": "secondary", "state": "pending",
             "regen_token": None, "regen_claimed_at_utc": None},
        ])  # fmt: skip
        connection.execute(table["step_run"].insert(), [{
            "renewal_id": "r-old", "fmc": "fmc-a", "device": "ftd-1", "step": "push", "attempt": 1,
            "state": "failed", "started_at_utc": T0, "finished_at_utc": T0,
            "error_kind": "DeviceUnreachableError",
        }])  # fmt: skip
        connection.execute(table["artifact"].insert(), [{
            "renewal_id": "r-old", "fmc": "fmc-a", "device": None, "kind": "backup", "path": "/etc/sf/ca.pem",
            "sha256": CERT_SHA256, "secret": False, "data": CERT, "created_at_utc": T0,
        }])  # fmt: skip


def _assert_history_kept(engine: Engine) -> None:
    with Session(engine) as session:
        old = store.renewal(session=session, renewal_id="r-old")
        assert old is not None
        assert (old.state, old.active_pair, old.requested_at_utc) == ("running", "dc1", T0)
        fmcs = store.fmcs_of(session=session, renewal_id="r-old")
        assert [(f.fmc, f.regen_token, f.regen_claimed_at_utc) for f in fmcs] == [
            ("fmc-a", "task-1", T0), ("fmc-b", None, None),
        ]  # fmt: skip
        (step,) = store.steps_of(session=session, renewal_id="r-old")
        assert (step.device, step.state, step.finished_at_utc) == ("ftd-1", "failed", T0)
        (artifact,) = store.artifacts_of(session=session, renewal_id="r-old")
        assert (store.artifact_data(artifact, key=None), artifact.created_at_utc) == (CERT, T0)


def test_upgrading_from_0001_keeps_history(empty_engine: Engine) -> None:
    store.migrate(empty_engine, revision="0001")
    assert store.current_revision(empty_engine) == "0001"
    assert "push_slot" not in inspect(empty_engine).get_table_names()
    _write_history_at_0001(empty_engine)
    store.migrate(empty_engine)
    assert store.current_revision(empty_engine) == script_directory().get_current_head()
    _assert_history_kept(empty_engine)
    with Session(empty_engine) as session:
        fmcs = store.fmcs_of(session=session, renewal_id="r-old")
        assert [(f.push_round, f.verify_round, f.regen_taken_at_utc) for f in fmcs] == [
            (0, 0, T0),
            (0, 0, None),
        ]
        # The new machinery works on the old rows: the claim taken at T0 is stale an hour later.
        later = T0 + timedelta(hours=1)
        assert store.take_over_regeneration(
            session=session, renewal_id="r-old", fmc="fmc-a", token="task-2", stale_before=later, now=later
        )
        assert _open(session, "r-old", 1, ("ftd-1",))
        assert _settle(session, "r-old", 1, "ftd-1")


def test_downgrading_to_0001_drops_only_the_rounds(engine: Engine) -> None:
    """The way back must not rebuild `renewal_fmc` (on SQLite that would cascade-delete every step)."""
    _downgrade(engine, "0001")
    _write_history_at_0001(engine)
    store.migrate(engine)
    with Session(engine) as session:
        assert _open(session, "r-old", 1, ("ftd-1",))
    _downgrade(engine, "0001")
    assert "push_slot" not in inspect(engine).get_table_names()
    columns = {c["name"] for c in inspect(engine).get_columns("renewal_fmc")}
    assert not columns & {"push_round", "verify_round", "regen_taken_at_utc"}
    store.migrate(engine)
    _assert_history_kept(engine)


def _downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)
