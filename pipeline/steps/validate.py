"""Step 2, validate: what the FMC and its peers look like before anything changes.

The FMC's `sftunnel_status.pl` says which tunnels are up (a peer whose tunnel is up gets its new files from
`generate_certs.pl` itself); the CA says how many days are left; each peer is tried by its routes in order
(direct, then its jump server, until one works, and never again after a refused login: each one counts
towards an AAA lockout), and what it holds for this FMC is read. A peer whose tunnel is down and
that no route reaches would be stranded by a renewal: `plan.plan_fmc` says so from these facts, before any
change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pipeline.certs import CertFacts
from pipeline.devicepaths import CA_CERT, IMS_CONF, PEER_CA, peer_dir
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
    holds_ca_sha256: str | None

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
class _Probe:
    probes: tuple[RouteProbe, ...]
    uuid: str | None
    holds_ca_sha256: str | None


def peers_of(pair: FmcPair, fmc: Fmc) -> list[Fmc | Ftd]:
    """The devices an FMC manages: every FTD of the pair, then the other FMC (its HA peer)."""
    other = pair.secondary if fmc.role == "primary" else pair.primary
    return [*pair.ftds, other]


def fmc_identity(session: DeviceSession) -> tuple[str, CertFacts, TunnelStatusReport]:
    """The FMC's own UUID, its CA, and its tunnels, read in three commands."""
    files = read_files(session, (IMS_CONF, CA_CERT))
    uuid = parse_ims_conf(files[IMS_CONF].decode()).get("APPLIANCE_UUID", "").lower()
    status = parse_tunnel_status(session.run("sftunnel_status.pl 2>&1").output)
    return uuid, CertFacts.from_pem(files[CA_CERT]), status


def refusal_text(exc: DeviceError) -> str:
    """A refused login in one line, naming who was refused where, and the fix."""
    where = f"{exc.device} (route {exc.route})"
    if isinstance(exc, AuthenticationFailedError):
        return f"authentication refused for {exc.username} on {where}: fix its credential"
    if isinstance(exc, HostKeyRejectedError):
        return f"host key refused for {where}: {exc.describe()}"
    return str(exc)


def probe_peer(factory: SessionFactory, device: Fmc | Ftd, fmc_uuid: str) -> _Probe:
    """Try the device's routes in order until one works, and read its UUID and the CA it holds for us there.
    The routes after a working one are not tried: the push tries them only if the first fails, so a second
    session per device (at 300 FTDs, 300 more logins per FMC) would prove nothing the push needs. A refused
    login (authentication, host key) ends the probing: no other route logs in again."""
    probes: list[RouteProbe] = []
    uuid: str | None = None
    held: str | None = None
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
            uuid, held = _peer_view(session, fmc_uuid)
        finally:
            session.close()
        probes.append(RouteProbe(route, ok=True))
        break
    return _Probe(tuple(probes), uuid, held)


def _peer_view(session: DeviceSession, fmc_uuid: str) -> tuple[str | None, str | None]:
    ca_path = f"{peer_dir(fmc_uuid)}/{PEER_CA}"
    files = read_files(session, (IMS_CONF, ca_path))
    uuid = parse_ims_conf(files[IMS_CONF].decode()).get("APPLIANCE_UUID") if IMS_CONF in files else None
    held = CertFacts.from_pem(files[ca_path]).sha256 if ca_path in files else None
    return (uuid.lower() if uuid else None), held


def tunnel_state(status: TunnelStatusReport, host: str, uuid: str | None) -> Tunnel:
    for key in (uuid, host):
        if key:
            tunnel = status.peer(key)
            if tunnel is not None:
                return "up" if tunnel.connected else "down"
    return "unknown"


def validate(
    session: DeviceSession,
    factory: SessionFactory,
    peers: Sequence[Fmc | Ftd],
    *,
    now_utc: datetime,
    workers: int = 8,
    refused: Mapping[str, RouteProbe] | None = None,
) -> ValidateOutcome:
    """Read the FMC, then probe every peer in parallel (SSH is network-bound). A peer in `refused` refused a
    login earlier in this renewal (the plan gate at enqueue): it is not logged in to again, and that refusal
    stands as its probe."""
    fmc_uuid, ca, status = fmc_identity(session)
    earlier = refused or {}

    def probe_once(device: Fmc | Ftd) -> _Probe:
        if device.name in earlier:
            return _Probe((earlier[device.name],), None, None)
        return probe_peer(factory, device, fmc_uuid)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="validate") as pool:
        probed = list(pool.map(probe_once, peers))
    facts = []
    for device, probe in zip(peers, probed, strict=True):
        uuid = device.uuid or probe.uuid
        facts.append(
            PeerFacts(
                name=device.name,
                host=device.host,
                uuid=uuid,
                tunnel=tunnel_state(status, device.host, uuid),
                probes=probe.probes,
                holds_ca_sha256=probe.holds_ca_sha256,
            )
        )
    return ValidateOutcome(
        fmc=session.device,
        fmc_uuid=fmc_uuid,
        ca_sha256=ca.sha256,
        ca_not_after_utc=ca.not_after_utc,
        ca_days_left=ca.days_left(now_utc),
        peers=tuple(facts),
    )
