"""The typed hand-off between steps: validate's record as stored, read back, refused when not one."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from pipeline.devices.session import DIRECT, Route
from pipeline.errors import BadRecordError, ErrorKind, kind_of
from pipeline.plan import PeerAction, plan_fmc
from pipeline.records import PeerRecord, RefusalRecord, ValidateRecord
from pipeline.steps.validate import PeerFacts, RouteProbe, Tunnel, ValidateOutcome
from tasks.artifacts import VALIDATE_PATH, read_validate_record

JUMP = Route("jump", "jump-1")
FMC_UUID = "3f2a6c1e-0d4b-11ef-9c3a-8f1e2d3c4b5a"

#: A validate artifact exactly as sftrenew wrote it before the records were typed (`json.dumps(document,
#: indent=1)` of a dict): databases hold these, and they must read back without a migration.
OLD_DOCUMENT = b"""{
 "fmc_uuid": "3f2a6c1e-0d4b-11ef-9c3a-8f1e2d3c4b5a",
 "ca_days_left": 9,
 "peers": [
  {
   "name": "ftd-001",
   "host": "10.0.1.1",
   "uuid": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
   "tunnel": "up",
   "routes": [
    "direct",
    "via jump-1"
   ],
   "action": "LIVE_PUSH"
  },
  {
   "name": "ftd-002",
   "host": "10.0.1.2",
   "uuid": "9b2f1c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
   "tunnel": "down",
   "routes": [
    "via jump-1"
   ],
   "action": "PUSH"
  },
  {
   "name": "ftd-003",
   "host": "10.0.1.3",
   "uuid": null,
   "tunnel": "unknown",
   "routes": [],
   "action": "STRANDED"
  }
 ]
}"""


def _peer(name: str, uuid: str | None, tunnel: Tunnel, ok: tuple[Route, ...]) -> PeerFacts:
    probes = tuple(
        RouteProbe(r, ok=r in ok, error_kind=None if r in ok else "DeviceUnreachableError")
        for r in (DIRECT, JUMP)
    )
    return PeerFacts(name, f"10.0.1.{name[-1]}", uuid, tunnel, probes)


FACTS = ValidateOutcome(
    "fmc-primary",
    FMC_UUID,
    "ab" * 32,
    datetime(2026, 12, 6, tzinfo=UTC),
    9,
    (
        _peer("ftd-001", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "up", (DIRECT, JUMP)),
        _peer("ftd-002", "9b2f1c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "down", (JUMP,)),
        _peer("ftd-003", None, "unknown", ()),
    ),
)


def _old_save_validate_document(facts: ValidateOutcome) -> dict[str, object]:
    """The dict the old `save_validate` built, copied: the shape the record must keep."""
    plan = plan_fmc(facts)
    return {
        "fmc_uuid": facts.fmc_uuid,
        "ca_days_left": facts.ca_days_left,
        "peers": [
            {
                "name": p.name,
                "host": p.host,
                "uuid": p.uuid,
                "tunnel": p.tunnel,
                "routes": [str(r) for r in p.routes_ok],
                "action": plan.peers[i].action.name,
            }
            for i, p in enumerate(facts.peers)
        ],
    }


def test_a_document_written_by_the_old_code_still_reads() -> None:
    record = read_validate_record(OLD_DOCUMENT, renewal_id="r-1", fmc="fmc-primary")

    assert record.fmc_uuid == FMC_UUID and record.ca_days_left == 9
    assert [(p.name, p.uuid, p.tunnel, p.routes, p.action) for p in record.peers] == [
        (
            "ftd-001",
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "up",
            ("direct", "via jump-1"),
            PeerAction.LIVE_PUSH,
        ),
        ("ftd-002", "9b2f1c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "down", ("via jump-1",), PeerAction.PUSH),
        ("ftd-003", None, "unknown", (), PeerAction.STRANDED),
    ]
    assert record.names_by_uuid() == {
        "7c9e6679-7425-40de-944b-e07fc1f90ae7": "ftd-001",
        "9b2f1c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d": "ftd-002",
    }
    assert record.peer("ftd-002") == record.peers[1] and record.peer("ftd-404") is None


def test_the_new_code_writes_what_the_old_code_wrote() -> None:
    written = ValidateRecord.of(FACTS, plan_fmc(FACTS)).model_dump_json(indent=1)

    assert json.loads(written) == _old_save_validate_document(FACTS) == json.loads(OLD_DOCUMENT)


def test_a_record_round_trips() -> None:
    record = ValidateRecord.of(FACTS, plan_fmc(FACTS))

    assert ValidateRecord.model_validate_json(record.model_dump_json()) == record


def test_records_are_frozen_and_closed() -> None:
    record = read_validate_record(OLD_DOCUMENT, renewal_id="r-1", fmc="fmc-primary")

    with pytest.raises(ValidationError, match="frozen"):
        record.ca_days_left = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        PeerRecord.model_validate(
            {
                "name": "x",
                "host": "h",
                "uuid": None,
                "tunnel": "up",
                "routes": (),
                "action": "PUSH",
                "more": 1,
            }
        )


def _edited(change: dict[str, object], peer_change: dict[str, object] | None = None) -> bytes:
    document = json.loads(OLD_DOCUMENT)
    document.update(change)
    if peer_change is not None:
        document["peers"][0].update(peer_change)
        document["peers"][0] = {k: v for k, v in document["peers"][0].items() if v is not ...}
    document = {k: v for k, v in document.items() if v is not ...}
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"not json at all", "document: Invalid JSON"),
        (b"[1, 2]", "document: Input should be an object"),
        (_edited({"fmc_uuid": ...}), "fmc_uuid: Field required"),
        (_edited({"ca_days_left": "9"}), "ca_days_left: Input should be a valid integer"),
        (_edited({"schema": 2}), "schema: Extra inputs are not permitted"),
        (_edited({}, {"tunnel": "sideways"}), "peers.0.tunnel: Input should be 'up', 'down' or 'unknown'"),
        (
            _edited({}, {"action": "push"}),
            "peers.0.action: Value error, expected one of LIVE_PUSH, PUSH, STRANDED",
        ),
        (_edited({}, {"uuid": ...}), "peers.0.uuid: Field required"),
        (_edited({}, {"routes": "direct"}), "peers.0.routes: Input should be a valid array"),
    ],
)
def test_a_document_that_is_not_a_record_is_refused_by_name(raw: bytes, where: str) -> None:
    with pytest.raises(BadRecordError) as caught:
        read_validate_record(raw, renewal_id="r-1", fmc="fmc-primary")

    message = str(caught.value)
    assert message.startswith(f"renewal r-1, fmc-primary: the stored validate artifact {VALIDATE_PATH} ")
    assert where in message
    assert "start a new renewal" in message
    assert kind_of(caught.value) is ErrorKind.BAD_RECORD
    assert str(type(caught.value)(*caught.value.args)) == message


def test_a_bad_record_never_shows_the_stored_values() -> None:
    secret = "hunter2-typed-into-the-wrong-field"
    raw = _edited({"ca_days_left": secret}, {"uuid": 42, "host": {"password": secret}})

    with pytest.raises(BadRecordError) as caught:
        read_validate_record(raw, renewal_id="r-1", fmc="fmc-primary")

    assert secret not in str(caught.value) and "42" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_bad_record_names_its_first_problems_and_counts_the_rest() -> None:
    raw = json.dumps({"fmc_uuid": 1, "ca_days_left": "x", "peers": [{}], "a": 1, "b": 2}).encode()

    with pytest.raises(BadRecordError) as caught:
        read_validate_record(raw, renewal_id="r-1", fmc="fmc-primary")

    assert caught.value.problem.count(": ") == 3
    assert caught.value.problem.endswith("more")


def test_a_refused_login_is_carried_to_the_push_and_verify() -> None:
    refused = PeerFacts(
        "ftd-004",
        "10.0.1.4",
        "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "down",
        (RouteProbe(DIRECT, ok=False, error_kind="AuthenticationFailedError", detail="refused: fix it"),),
    )
    facts = dataclasses.replace(FACTS, peers=(*FACTS.peers, refused))
    record = ValidateRecord.of(facts, plan_fmc(facts))

    peer = record.peer("ftd-004")
    assert peer is not None and peer.action is PeerAction.REFUSED and peer.routes == ()
    assert peer.refusal == RefusalRecord(
        kind="AuthenticationFailedError", route="direct", detail="refused: fix it"
    )
    assert ValidateRecord.model_validate_json(record.model_dump_json()) == record
    # A peer that refused nothing is written as it always was (no new key), and an old one reads as such.
    written = json.loads(record.model_dump_json())
    assert [sorted(p) for p in written["peers"][:3]] == [sorted(p) for p in json.loads(OLD_DOCUMENT)["peers"]]
    assert written["peers"][3]["refusal"]["kind"] == "AuthenticationFailedError"
    old = read_validate_record(OLD_DOCUMENT, renewal_id="r-1", fmc="fmc-primary")
    assert all(p.refusal is None for p in old.peers)
