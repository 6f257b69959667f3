"""What a renewal will do to each device, decided from the facts validate read, before anything changes.

Pure: `ValidateOutcome`s in, a `RenewalPlan` out. A peer whose tunnel is up gets its new files from
`generate_certs.pl` over that tunnel; any other peer needs a push over SSH, directly or through its jump
server; a peer with neither is *stranded*: after the regeneration it would hold a CA its FMC no longer
uses, and only hands on the box could bring it back. The plan names those before the regeneration runs.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from pipeline.devices.session import Route
from pipeline.errors import StrandedDevicesError
from pipeline.steps.validate import PeerFacts, ValidateOutcome


class PeerAction(enum.Enum):
    LIVE_PUSH = "pushed by generate_certs.pl over the live tunnel"
    PUSH = "pushed over SSH"
    STRANDED = "stranded: tunnel down and no SSH route"
    #: Tunnel down and the device refused validate's login: stranded too, until the login is fixed.
    REFUSED = "stranded: tunnel down and the login refused"


@dataclass(frozen=True)
class PeerPlan:
    name: str
    action: PeerAction
    #: The routes a push may use, best first (also the fallback for a live push that did not land).
    routes: tuple[Route, ...]
    tunnel: str
    #: The login the device refused at validate, and the fix: no step of this renewal logs in to it again
    #: (its push fails at once) until `sftrenew retry`.
    refusal: str | None = None

    def describe(self) -> str:
        via = ", then ".join(str(r) for r in self.routes) or "no SSH route"
        return f"{self.name}: {self.action.value} ({self.refusal or via})"


@dataclass(frozen=True)
class FmcPlan:
    fmc: str
    ca_days_left: int
    peers: tuple[PeerPlan, ...]

    @property
    def stranded(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.peers if p.action in (PeerAction.STRANDED, PeerAction.REFUSED))

    @property
    def refused(self) -> tuple[PeerPlan, ...]:
        return tuple(p for p in self.peers if p.refusal is not None)


@dataclass(frozen=True)
class RenewalPlan:
    pair: str
    fmcs: tuple[FmcPlan, ...]

    @property
    def stranded(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for fmc in self.fmcs for name in fmc.stranded))

    def raise_for_stranded(self) -> None:
        """For callers that refuse to strand anything: StrandedDevicesError naming every such device."""
        for fmc in self.fmcs:
            if fmc.stranded:
                raise StrandedDevicesError(
                    fmc.fmc, fmc.stranded, "tunnel down and no SSH route, direct or jump"
                )


def plan_peer(peer: PeerFacts) -> PeerPlan:
    routes = peer.routes_ok
    refusal = peer.refusal.detail if peer.refusal is not None else None
    if peer.tunnel == "up":
        action = PeerAction.LIVE_PUSH
    elif routes:
        action = PeerAction.PUSH
    elif refusal is not None:
        action = PeerAction.REFUSED
    else:
        action = PeerAction.STRANDED
    return PeerPlan(peer.name, action, routes, peer.tunnel, refusal)


def plan_fmc(facts: ValidateOutcome) -> FmcPlan:
    return FmcPlan(facts.fmc, facts.ca_days_left, tuple(plan_peer(p) for p in facts.peers))


def plan_renewal(pair: str, facts: Sequence[ValidateOutcome]) -> RenewalPlan:
    """One FmcPlan per FMC, in the order given (primary first)."""
    return RenewalPlan(pair, tuple(plan_fmc(f) for f in facts))


def _why_stranded(peer: PeerPlan) -> str:
    return f"{peer.action.value}: {peer.refusal}" if peer.refusal else peer.action.value


@dataclass(frozen=True)
class GateRefusal:
    """Why the plan gate refuses to start a renewal: the devices it would strand that nobody accepted, and
    the FMCs whose CA is not due when nobody forced it. Each line names the thing and the way through."""

    stranded: tuple[PeerPlan, ...]
    not_due: tuple[FmcPlan, ...]
    renew_within_days: int

    def lines(self) -> list[str]:
        out = [
            f"{p.name} would be stranded ({_why_stranded(p)}): give it an SSH route or a live tunnel, or "
            f"accept losing it with --accept-stranded {p.name}"
            for p in self.stranded
        ]
        out.extend(
            f"{f.fmc}: its CA has {f.ca_days_left} days left, more than SFTRENEW_RENEW_WITHIN_DAYS "
            f"({self.renew_within_days}): not due; to renew it anyway, --force --reason TEXT"
            for f in self.not_due
        )
        return out


def stranded_peers(plan: RenewalPlan) -> dict[str, PeerPlan]:
    """Every device some FMC of the plan would strand, by name (as the first FMC that would sees it)."""
    found: dict[str, PeerPlan] = {}
    for fmc in plan.fmcs:
        for peer in fmc.peers:
            if peer.name in fmc.stranded:
                found.setdefault(peer.name, peer)
    return found


def gate(
    plan: RenewalPlan, *, accepted: Collection[str], forced: bool, renew_within_days: int
) -> GateRefusal | None:
    """None when the renewal may start: every device it would strand was accepted by name, and every CA is
    due (within `renew_within_days` of its end, or past it) or the renewal is forced."""
    stranded = tuple(p for name, p in stranded_peers(plan).items() if name not in accepted)
    not_due = () if forced else tuple(f for f in plan.fmcs if f.ca_days_left > renew_within_days)
    if not stranded and not not_due:
        return None
    return GateRefusal(stranded, not_due, renew_within_days)
