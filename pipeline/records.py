"""What one step hands the next through the store, as typed records validated where they are read back.

A step's outcome stays a plain dataclass (the in-process runner passes it along in memory); what a later task,
maybe on another machine, reads back from the database is one of these records. They are pydantic models,
frozen and closed (`extra="forbid"`, strict types), written with `model_dump_json` and read with
`model_validate_json`, so a document that is not what this code wrote (another version, an edit by hand)
fails where it is read, naming the field, instead of deep inside a step as a `KeyError`.

The JSON they write is the shape the record has always held (the same keys and values), so databases
written by earlier versions read back without a migration.

Most facts between steps already live in typed columns (the backup's CA and FMC UUID, the regeneration's
claim and new CA, each push's write and restart, step runs) or in sealed artifacts with a path (the material);
validate's facts are the one document.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from pipeline.plan import FmcPlan, PeerAction
from pipeline.steps.validate import PeerFacts, Tunnel, ValidateOutcome


def _peer_action(value: object) -> PeerAction:
    if isinstance(value, PeerAction):
        return value
    if isinstance(value, str) and value in PeerAction.__members__:
        return PeerAction[value]
    raise ValueError(f"expected one of {', '.join(PeerAction.__members__)}")


#: A plan's action, stored by its name (LIVE_PUSH, PUSH, STRANDED), as it always was.
StoredAction = Annotated[
    PeerAction, PlainValidator(_peer_action), PlainSerializer(lambda a: a.name, return_type=str)
]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class RefusalRecord(_Record):
    """A login the peer refused at validate: its kind (an `ErrorKind` value), the route, and what to fix."""

    kind: Annotated[str, Field(min_length=1)]
    route: Annotated[str, Field(min_length=1)]
    detail: str


class PeerRecord(_Record):
    """One peer of the FMC as validate found it, and what the plan decided for it."""

    name: Annotated[str, Field(min_length=1)]
    host: Annotated[str, Field(min_length=1)]
    #: None when validate could not read it and the inventory does not give it: nothing can be pushed then.
    uuid: str | None
    tunnel: Tunnel
    #: The routes that opened a root shell at validate, best first, as they print (`direct`, `via jump-1`).
    routes: tuple[str, ...]
    action: StoredAction
    #: The login the peer refused at validate (None: none; documents written before it have no such key):
    #: no step of this renewal logs in to it again until `sftrenew retry` (`pipeline.flow.login_refused`).
    refusal: RefusalRecord | None = None
    #: Its routes are those the plan gate found at enqueue, moments before: validate did not log in to it.
    from_plan: bool = False

    @model_serializer(mode="wrap")
    def _as_always_without_a_refusal(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """A peer that refused nothing, probed by validate itself, is written exactly as before those fields
        existed."""
        data: dict[str, object] = handler(self)
        if data.get("refusal") is None:
            data.pop("refusal", None)
        if not data.get("from_plan"):
            data.pop("from_plan", None)
        return data


class ValidateRecord(_Record):
    """Validate's facts for one FMC and the plan's action per peer, stored as the `validate` artifact:
    what regenerate, push and verify read back."""

    fmc_uuid: str
    ca_days_left: int
    peers: tuple[PeerRecord, ...]

    @classmethod
    def of(cls, facts: ValidateOutcome, plan: FmcPlan) -> ValidateRecord:
        """From validate's outcome and the plan made from it (one plan entry per peer, in the same order)."""
        return cls(
            fmc_uuid=facts.fmc_uuid,
            ca_days_left=facts.ca_days_left,
            peers=tuple(
                PeerRecord(
                    name=p.name,
                    host=p.host,
                    uuid=p.uuid,
                    tunnel=p.tunnel,
                    routes=tuple(str(r) for r in p.routes_ok),
                    action=planned.action,
                    refusal=_refusal(p),
                    from_plan=p.from_plan,
                )
                for p, planned in zip(facts.peers, plan.peers, strict=True)
            ),
        )

    def peer(self, name: str) -> PeerRecord | None:
        return next((p for p in self.peers if p.name == name), None)

    def names_by_uuid(self) -> dict[str, str]:
        """Peer UUID -> inventory name, for the peers whose UUID is known."""
        return {p.uuid: p.name for p in self.peers if p.uuid}


def _refusal(peer: PeerFacts) -> RefusalRecord | None:
    probe = peer.refusal
    if probe is None or probe.error_kind is None:
        return None
    return RefusalRecord(kind=probe.error_kind, route=str(probe.route), detail=probe.detail or "")


def plan_changes(seen: ValidateRecord, now: FmcPlan) -> list[str]:
    """How the plan `now` differs from the one someone saw (`seen`), peer by peer: a changed action (newly
    stranded, say) or a changed route. Empty when nothing that matters changed."""
    before = {p.name: p for p in seen.peers}
    changes: list[str] = []
    for peer in now.peers:
        old = before.pop(peer.name, None)
        routes = tuple(str(r) for r in peer.routes)
        if old is None:
            changes.append(f"{now.fmc}: {peer.name} is new: {peer.describe()}")
        elif old.action is not peer.action:
            changes.append(f"{now.fmc}: {peer.name} was {old.action.value}, now {peer.describe()}")
        elif old.routes != routes:
            was = ", then ".join(old.routes) or "no SSH route"
            changes.append(f"{now.fmc}: {peer.name} routes were {was}, now {peer.describe()}")
    changes.extend(f"{now.fmc}: {name} is gone from the plan" for name in before)
    return changes
