"""What `sftrenew status` and the renewal page read of a renewal: one read of the record, shared by both.

`read_renewal` takes what the status table is made of (the renewal, its FMCs, every step attempt, every
event), whether it waits for an approval or a resume, and the plans recorded at enqueue; `plans_of` turns
those plans into plain lines per FMC and peer. Rendering is the caller's: `pipeline.report` for the
terminal, `sftrenew.web.view` for the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from pipeline import flow, store
from pipeline.errors import ConfigError
from tasks import artifacts


@dataclass(frozen=True)
class RenewalRead:
    renewal: store.Renewal
    fmcs: list[store.RenewalFmc]
    steps: list[store.StepRun]
    events: list[store.RenewalEvent]
    #: Held at enqueue and not approved yet (and still running): no CA is regenerated until approved.
    held: bool
    #: Paused and not resumed (and still running): no push starts, verify waits.
    paused: bool
    #: The plans recorded at enqueue (kind `plan`, one per FMC): read when held, or when asked for.
    plans: list[store.Artifact]


def read_renewal(db: Session, renewal_id: str | None, *, with_plans: bool = False) -> RenewalRead:
    """The renewal `renewal_id` (None: the last one) as the record has it; ConfigError when there is none."""
    row = store.renewal(session=db, renewal_id=renewal_id) if renewal_id else store.last_renewal(session=db)
    if row is None:
        raise ConfigError(f"no renewal {renewal_id}" if renewal_id else "no renewal recorded yet")
    active = flow.takes_step(row.state)
    held = active and store.awaiting_approval(session=db, renewal_id=row.id)
    return RenewalRead(
        renewal=row,
        fmcs=store.fmcs_of(session=db, renewal_id=row.id),
        steps=store.steps_of(session=db, renewal_id=row.id),
        events=store.events_of(session=db, renewal_id=row.id),
        held=held,
        paused=active and store.paused(session=db, renewal_id=row.id),
        plans=store.artifacts_of(session=db, renewal_id=row.id, kind="plan") if held or with_plans else [],
    )


@dataclass(frozen=True)
class PlannedPeer:
    name: str
    #: What the renewal will do to the peer (`pipeline.plan.PeerAction`'s value).
    action: str
    #: Its SSH routes in order, e.g. "direct, then via jump-1", or "no SSH route".
    routes: str


@dataclass(frozen=True)
class PlannedFmc:
    fmc: str
    ca_days_left: int
    peers: tuple[PlannedPeer, ...]


def plans_of(renewal_id: str, plans: Sequence[store.Artifact]) -> list[PlannedFmc]:
    """The plans recorded at enqueue, per FMC (BadRecordError names a plan that does not read back)."""
    out = []
    for artifact in plans:
        record = artifacts.read_validate_record(artifact.data, renewal_id=renewal_id, fmc=artifact.fmc)
        peers = tuple(
            PlannedPeer(peer.name, peer.action.value, ", then ".join(peer.routes) or "no SSH route")
            for peer in record.peers
        )
        out.append(PlannedFmc(artifact.fmc, record.ca_days_left, peers))
    return out
