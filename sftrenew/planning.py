"""The read-only plan against the live fleet, as `plan` prints it and `enqueue` gates on it.

Each FMC of the pair is validated as the renewal's own validate step does it (its CA, its tunnels, each peer
tried by its routes until one works; a device probed once for both FMCs), and nothing is changed:
`pipeline.plan` turns the facts into what a renewal would do to each device.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.devices.factory import SessionFactory
from pipeline.errors import REFUSAL_KINDS
from pipeline.inventory import FmcPair
from pipeline.plan import RenewalPlan, plan_renewal
from pipeline.settings import Settings
from pipeline.steps.validate import (
    FmcIdentity,
    ValidateOutcome,
    facts_of,
    fmc_identity,
    peers_of,
    probe_peers,
)

#: `plan --json`'s shape; a change that breaks a reader gets a new number.
PLAN_SCHEMA = "sftrenew.plan/1"


@dataclass(frozen=True)
class PairPlan:
    pair: FmcPair
    facts: tuple[ValidateOutcome, ...]
    plan: RenewalPlan

    def lines(self) -> list[str]:
        """The plan as `plan` and `enqueue` print it: per FMC its CA, then what happens to each peer."""
        out: list[str] = []
        for fmc, facts, fmc_plan in zip(self.pair.fmcs, self.facts, self.plan.fmcs, strict=True):
            out.append(
                f"{fmc.role} {fmc.name}: CA {facts.ca_sha256[:16]}… has {facts.ca_days_left} days left"
            )
            out.extend(f"  {peer.describe()}" for peer in fmc_plan.peers)
            out.extend(
                f"  jump server {jump} refused the login ({kind}): fix its credential or host key"
                for jump, kind in sorted(jump_refusals(facts).items())
            )
        return out

    def document(self) -> dict[str, object]:
        """The plan as `plan --json` prints it (shape `PLAN_SCHEMA`, docs/cli.md)."""
        return {
            "schema": PLAN_SCHEMA,
            "pair": self.pair.name,
            "stranded": list(self.plan.stranded),
            "fmcs": [
                {
                    "fmc": fmc.name,
                    "role": fmc.role,
                    "ca_sha256": facts.ca_sha256,
                    "ca_days_left": facts.ca_days_left,
                    "jump_refusals": jump_refusals(facts),
                    "peers": [
                        {
                            "name": peer.name,
                            "action": peer.action.name.lower(),
                            "tunnel": peer.tunnel,
                            "routes": [str(route) for route in peer.routes],
                            "refusal": peer.refusal,
                        }
                        for peer in fmc_plan.peers
                    ],
                }
                for fmc, facts, fmc_plan in zip(self.pair.fmcs, self.facts, self.plan.fmcs, strict=True)
            ],
        }

    def jump_refusals(self) -> dict[str, str]:
        """Every jump server that refused a login while planning, with the refusal's kind."""
        return {jump: kind for facts in self.facts for jump, kind in jump_refusals(facts).items()}


def jump_refusals(facts: ValidateOutcome) -> dict[str, str]:
    """The jump servers that refused validate's login (theirs, not a device's), with the refusal's kind."""
    return {
        probe.route.jump: probe.error_kind
        for peer in facts.peers
        for probe in peer.probes
        if probe.route.jump and probe.error_kind in REFUSAL_KINDS and probe.detail is None
    }


def plan_pair(factory: SessionFactory, pair: FmcPair, settings: Settings) -> PairPlan:
    """Validate each FMC of the pair (read-only) and plan from what was found. Each FMC's own side (CA,
    tunnels) is read from it; each device is probed once for both FMCs, as what a login finds does not depend
    on the FMC asking (at 300 FTDs, 300 logins instead of 600). A jump server that refused a login is not
    logged in to again while planning (`SessionFactory.guarded`)."""
    factory = factory.guarded()
    identities: list[FmcIdentity] = []
    for fmc in pair.fmcs:
        session = factory.open(fmc.name, factory.routes_for(fmc.name)[0])
        try:
            identities.append(fmc_identity(session))
        finally:
            session.close()
    devices = list({d.name: d for fmc in pair.fmcs for d in peers_of(pair, fmc)}.values())
    probes = probe_peers(factory, devices, workers=settings.step_sessions)
    now = datetime.now(UTC)
    found = [
        facts_of(fmc.name, identity, peers_of(pair, fmc), probes, now_utc=now)
        for fmc, identity in zip(pair.fmcs, identities, strict=True)
    ]
    return PairPlan(pair, tuple(found), plan_renewal(pair.name, found))
