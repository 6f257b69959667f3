"""The read-only plan against the live fleet, as `plan` prints it and `enqueue` gates on it.

Each FMC of the pair is validated as the renewal's own validate step does it (its CA, its tunnels, each peer
tried by its routes until one works), and nothing is changed: `pipeline.plan` turns the facts into what a
renewal would do to each device.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.devices.factory import SessionFactory
from pipeline.inventory import FmcPair
from pipeline.plan import RenewalPlan, plan_renewal
from pipeline.settings import Settings
from pipeline.steps.validate import ValidateOutcome, peers_of, validate


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
        return out


def plan_pair(factory: SessionFactory, pair: FmcPair, settings: Settings) -> PairPlan:
    """Validate each FMC of the pair (read-only) and plan from what was found."""
    found: list[ValidateOutcome] = []
    for fmc in pair.fmcs:
        session = factory.open(fmc.name, factory.routes_for(fmc.name)[0])
        try:
            found.append(
                validate(
                    session,
                    factory,
                    peers_of(pair, fmc),
                    now_utc=datetime.now(UTC),
                    workers=settings.step_sessions,
                )
            )
        finally:
            session.close()
    return PairPlan(pair, tuple(found), plan_renewal(pair.name, found))
