"""Step 2, validate: what the FMC and its peers look like before anything changes.

The FMC's `sftunnel_status.pl` says which tunnels are up (a peer whose tunnel is up gets its new files from
`generate_certs.pl` itself); the CA says how many days are left; each peer is tried by its routes in order
(direct, then its jump server, until one works, and never again after a refused login: each one counts
towards an AAA lockout), and the UUID it reports is read. A peer whose tunnel is down and that no route
reaches would be stranded by a renewal: `plan.plan_fmc` says so from these facts, before any
change. What a probe finds does not depend on the FMC asking, so the plan gate probes each device of a pair
once for both FMCs (`sftrenew.planning`), and the renewal's own validate, moments later, logs in only to the
devices the gate could not vouch for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pipeline.certs import CertFacts
from pipeline.devicepaths import CA_CERT, IMS_CONF
from pipeline.devices.factory import SessionFactory
from pipeline.devices.files import read_files
from pipeline.devices.session import DeviceSession, Route
from pipeline.errors import (
    REFUSAL_KINDS,
    AuthenticationFailedError,
    DeviceError,
    HostKeyRejectedError,
    is_refusal,
    recorded_kind,
)
from pipeline.inventory import Fmc, FmcPair, Ftd
from pipeline.parsing import TunnelStatusReport, parse_ims_conf, parse_tunnel_status

Tunnel = Literal["up", "down", "unknown"]


@dataclass(frozen=True)
class RouteProbe:
    """One route tried to one device: whether a root shell was had, and if not, the error's kind."""

    route: Route
    ok: bool
    error_kind: str | None = None
    #: For a login the device itself refused (authentication or host key): what was refused and the fix.
    detail: str | None = None

    @property
    def refused(self) -> bool:
        return self.detail is not None and self.error_kind in REFUSAL_KINDS


@dataclass(frozen=True)
class PeerFacts:
    """One peer of the FMC (an FTD, or the other FMC of the pair) as validate found it."""

    name: str
    host: str
    uuid: str | None
    tunnel: Tunnel
    probes: tuple[RouteProbe, ...]
    #: Its probes were the plan gate's, made moments before in this renewal, not this validate's own.
    from_plan: bool = False

    @property
    def routes_ok(self) -> tuple[Route, ...]:
        return tuple(p.route for p in self.probes if p.ok)

    @property
    def refusal(self) -> RouteProbe | None:
        """The probe the device refused (no route was tried after it), if any."""
        return next((p for p in self.probes if p.refused), None)


@dataclass(frozen=True)
class ValidateOutcome:
    fmc: str
    fmc_uuid: str
    ca_sha256: str
    ca_not_after_utc: datetime
    ca_days_left: int
    peers: tuple[PeerFacts, ...]

    def peer(self, name: str) -> PeerFacts:
        for peer in self.peers:
            if peer.name == name:
                return peer
        raise KeyError(name)


@dataclass(frozen=True)
class PeerProbe:
    """What logging in to one device found: the routes tried, in order, and the UUID it reported. It does
    not depend on the FMC asking, so one probe serves both FMCs of a pair."""

    probes: tuple[RouteProbe, ...]
    uuid: str | None
    #: Found earlier in this renewal (the plan gate), not by this probe.
    from_plan: bool = False


@dataclass(frozen=True)
class FmcIdentity:
    """The FMC's own side of validate: its UUID, its CA, its tunnels."""

    uuid: str
    ca: CertFacts
    tunnels: TunnelStatusReport


def peers_of(pair: FmcPair, fmc: Fmc) -> list[Fmc | Ftd]:
    """The devices an FMC manages: every FTD of the pair, then the other FMC (its HA peer)."""
    other = pair.secondary if fmc.role == "primary" else pair.primary
    return [*pair.ftds, other]


def fmc_identity(session: DeviceSession) -> FmcIdentity:
    """The FMC's own UUID, its CA, and its tunnels, read in three commands."""
    files = read_files(session, (IMS_CONF, CA_CERT))
    uuid = parse_ims_conf(files[IMS_CONF].decode()).get("APPLIANCE_UUID", "").lower()
    status = parse_tunnel_status(session.run("sftunnel_status.pl 2>&1").output)
    return FmcIdentity(uuid, CertFacts.from_pem(files[CA_CERT]), status)


def refusal_text(exc: DeviceError) -> str:
    """A refused login in one line, naming who was refused where, and the fix."""
    where = f"{exc.device} (route {exc.route})"
    if isinstance(exc, AuthenticationFailedError):
        return f"authentication refused for {exc.username} on {where}: fix its credential"
    if isinstance(exc, HostKeyRejectedError):
        return f"host key refused for {where}: {exc.describe()}"
    return str(exc)


def probe_peer(factory: SessionFactory, device: Fmc | Ftd) -> PeerProbe:
    """Try the device's routes in order until one gives a root shell, and read the UUID it reports. The
    routes after a working one are not tried: the push tries them only if the first fails, so a second
    session per device (at 300 FTDs, 300 more logins per FMC) would prove nothing the push needs. A refused
    login (authentication, host key) ends the probing: no other route logs in again."""
    probes: list[RouteProbe] = []
    uuid: str | None = None
    for route in factory.routes_for(device.name):
        try:
            session = factory.open(device.name, route)
        except DeviceError as exc:
            if is_refusal(exc):
                own = exc.device == device.name  # not its jump server's refusal
                detail = refusal_text(exc) if own else None
                probes.append(RouteProbe(route, ok=False, error_kind=recorded_kind(exc), detail=detail))
                break
            probes.append(RouteProbe(route, ok=False, error_kind=type(exc).__name__))
            continue
        try:
            uuid = _reported_uuid(session)
        finally:
            session.close()
        probes.append(RouteProbe(route, ok=True))
        break
    return PeerProbe(tuple(probes), uuid)


def _reported_uuid(session: DeviceSession) -> str | None:
    files = read_files(session, (IMS_CONF,))
    uuid = parse_ims_conf(files[IMS_CONF].decode()).get("APPLIANCE_UUID") if IMS_CONF in files else None
    return uuid.lower() if uuid else None


def probe_peers(
    factory: SessionFactory,
    devices: Sequence[Fmc | Ftd],
    *,
    workers: int,
    known: Mapping[str, PeerProbe] | None = None,
) -> dict[str, PeerProbe]:
    """Probe every device not in `known`, in parallel (SSH is network-bound); the others keep what is known
    of them. By device name."""
    earlier = known or {}
    todo = [d for d in devices if d.name not in earlier]
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="validate") as pool:
        probed = dict(
            zip((d.name for d in todo), pool.map(lambda d: probe_peer(factory, d), todo), strict=True)
        )
    return {d.name: earlier[d.name] if d.name in earlier else probed[d.name] for d in devices}


def tunnel_state(status: TunnelStatusReport, host: str, uuid: str | None) -> Tunnel:
    for key in (uuid, host):
        if key:
            tunnel = status.peer(key)
            if tunnel is not None:
                return "up" if tunnel.connected else "down"
    return "unknown"


def facts_of(
    fmc: str,
    identity: FmcIdentity,
    peers: Sequence[Fmc | Ftd],
    probes: Mapping[str, PeerProbe],
    *,
    now_utc: datetime,
) -> ValidateOutcome:
    """The FMC's validate outcome: its identity joined with each peer's probe and its tunnel."""
    facts = []
    for device in peers:
        probe = probes[device.name]
        uuid = device.uuid or probe.uuid
        facts.append(
            PeerFacts(
                name=device.name,
                host=device.host,
                uuid=uuid,
                tunnel=tunnel_state(identity.tunnels, device.host, uuid),
                probes=probe.probes,
                from_plan=probe.from_plan,
            )
        )
    return ValidateOutcome(
        fmc=fmc,
        fmc_uuid=identity.uuid,
        ca_sha256=identity.ca.sha256,
        ca_not_after_utc=identity.ca.not_after_utc,
        ca_days_left=identity.ca.days_left(now_utc),
        peers=tuple(facts),
    )


def validate(
    session: DeviceSession,
    factory: SessionFactory,
    peers: Sequence[Fmc | Ftd],
    *,
    now_utc: datetime,
    workers: int = 8,
    known: Mapping[str, PeerProbe] | None = None,
) -> ValidateOutcome:
    """Read the FMC, then probe every peer in parallel. A peer in `known` is not logged in to: what this
    renewal's plan gate found of it stands (a login it refused, which must not be tried again, as each
    counts towards a lockout; or a working route found moments before, `tasks.artifacts.known_at_plan`).
    The tunnels are always read afresh from the FMC."""
    identity = fmc_identity(session)
    probes = probe_peers(factory, peers, workers=workers, known=known)
    return facts_of(session.device, identity, peers, probes, now_utc=now_utc)
