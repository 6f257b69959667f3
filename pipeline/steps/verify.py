"""Step 5, verify: every peer back on the sftunnel, holding material of the new CA.

Two checks, because either alone can lie: the FMC's `sftunnel_status.pl`, polled until every expected peer
is connected or the deadline passes (an injected clock and sleep, and a cap on polls), and an X.509 check of
what each peer now holds for this FMC (issued by the new CA, key matches, valid now). Runs whatever the pushes
did, and says per device: verified, not connected, wrong CA, or unreachable. A device that refused a login is
not logged in to again: not by another route, and not at all when the runner says it refused one earlier in
the renewal (`Expected.refused`, from `pipeline.flow.login_refused`).

What a peer holds is known without a login when this renewal's push read it in its own session
(`Expected.recorded`: the push reads the files before deciding, and reads back by SHA-256 what it wrote):
the record names the certificate by fingerprint, and that certificate (the one this renewal made for the
peer) is checked here. Only a peer whose record cannot answer (no successful push, or a record of other
files) is logged in to, and those in parallel: at 300 FTDs one session after another was as long as all
the pushes together.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.certs import CertFacts, issued_by, key_works_with
from pipeline.devicepaths import PEER_CA, PEER_CERT, PEER_KEY, peer_dir
from pipeline.devices.factory import SessionFactory
from pipeline.devices.files import read_files
from pipeline.devices.session import DeviceSession
from pipeline.errors import DeviceError, is_refusal
from pipeline.parsing import parse_tunnel_status
from pipeline.steps.push import HeldFiles
from pipeline.steps.validate import refusal_text, tunnel_state


class Verdict(enum.Enum):
    VERIFIED = "verified"
    NOT_CONNECTED = "not connected"
    WRONG_CA = "wrong CA"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Expected:
    """A peer the FMC should see again: its inventory name, address and (when known) UUID."""

    name: str
    host: str
    uuid: str | None
    #: Why verify must not log in to it (it refused a login earlier in this renewal); None: it may.
    refused: str | None = None
    #: What this renewal's latest successful push found it holding when the push ended; None: no such push.
    recorded: Recorded | None = None


@dataclass(frozen=True)
class Recorded:
    """What a push read on the peer in its own session (`PushOutcome.held`), with the certificate this
    renewal made for the peer, which the record names by fingerprint when the push left it in place."""

    held: HeldFiles
    cert_pem: bytes = field(repr=False)
    route: str


@dataclass(frozen=True)
class DeviceVerdict:
    name: str
    verdict: Verdict
    connected: bool
    detail: str


@dataclass(frozen=True)
class VerifyOutcome:
    fmc: str
    polls: int
    devices: tuple[DeviceVerdict, ...]

    @property
    def ok(self) -> bool:
        return all(d.verdict is Verdict.VERIFIED for d in self.devices)

    def verdict(self, name: str) -> Verdict:
        return next(d.verdict for d in self.devices if d.name == name)


@dataclass(frozen=True)
class PollPolicy:
    """How long and how often verify polls sftunnel_status.pl; clock and sleep are injected for tests."""

    deadline_s: float = 180.0
    interval_s: float = 5.0
    max_polls: int = 1000
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def poll_connected(
    session: DeviceSession, expected: Sequence[Expected], policy: PollPolicy
) -> tuple[set[str], int]:
    """Poll sftunnel_status.pl until every expected peer is connected, the deadline passes or max_polls."""
    give_up = policy.clock() + policy.deadline_s
    polls = 0
    connected: set[str] = set()
    while polls < policy.max_polls:
        polls += 1
        status = parse_tunnel_status(session.run("sftunnel_status.pl 2>&1").output)
        connected = {e.name for e in expected if tunnel_state(status, e.host, e.uuid) == "up"}
        if len(connected) == len(expected) or policy.clock() + policy.interval_s > give_up:
            break
        policy.sleep(policy.interval_s)
    return connected, polls


def check_held(session: DeviceSession, *, fmc_uuid: str, ca_pem: bytes, now_utc: datetime) -> str | None:
    """None when the peer holds a good set for this FMC; otherwise what is wrong."""
    folder = peer_dir(fmc_uuid)
    files = read_files(session, [f"{folder}/{n}" for n in (PEER_CA, PEER_CERT, PEER_KEY)])
    ca, cert, key = (files.get(f"{folder}/{n}") for n in (PEER_CA, PEER_CERT, PEER_KEY))
    if ca is None or cert is None or key is None:
        return f"missing files in {folder}"
    if CertFacts.from_pem(ca).sha256 != CertFacts.from_pem(ca_pem).sha256:
        return "holds another CA"
    if not key_works_with(cert, key):
        return "key does not match the certificate"
    return check_cert(cert, ca_pem, now_utc)


def check_cert(cert_pem: bytes, ca_pem: bytes, now_utc: datetime) -> str | None:
    """None when the certificate is the new CA's and it and the CA are valid now; otherwise what is wrong."""
    if not issued_by(cert_pem, ca_pem):
        return "certificate not issued by the new CA"
    if not CertFacts.from_pem(cert_pem).valid_at(now_utc) or not CertFacts.from_pem(ca_pem).valid_at(now_utc):
        return "certificate not valid now"
    return None


def from_record(recorded: Recorded, ca_pem: bytes, now_utc: datetime) -> str | None:
    """None when the record proves a good set (the new CA, the certificate made for the peer, its key);
    otherwise why the record cannot answer (the peer is then read)."""
    held = recorded.held
    if held.ca_sha256 != CertFacts.from_pem(ca_pem).sha256:
        return "the push found another CA"
    if held.cert_sha256 != CertFacts.from_pem(recorded.cert_pem).sha256 or not held.key_matches_cert:
        return "the push found another certificate or key"
    return check_cert(recorded.cert_pem, ca_pem, now_utc)


def inspect_device(
    factory: SessionFactory,
    device: Expected,
    *,
    fmc_uuid: str,
    ca_pem: bytes,
    connected: bool,
    now_utc: datetime,
) -> DeviceVerdict:
    """Read what the device holds by the first route that works; a refused login ends the trying."""
    if device.refused is not None:
        return DeviceVerdict(device.name, Verdict.UNREACHABLE, connected, device.refused)
    errors: list[str] = []
    for route in factory.routes_for(device.name):
        try:
            session = factory.open(device.name, route)
        except DeviceError as exc:
            if is_refusal(exc):
                detail = "; ".join([*errors, refusal_text(exc)])
                return DeviceVerdict(device.name, Verdict.UNREACHABLE, connected, detail)
            errors.append(f"{route}: {type(exc).__name__}")
            continue
        try:
            problem = check_held(session, fmc_uuid=fmc_uuid, ca_pem=ca_pem, now_utc=now_utc)
        finally:
            session.close()
        if problem is not None:
            return DeviceVerdict(device.name, Verdict.WRONG_CA, connected, problem)
        if not connected:
            return DeviceVerdict(
                device.name, Verdict.NOT_CONNECTED, False, "holds the new files; tunnel down"
            )
        return DeviceVerdict(device.name, Verdict.VERIFIED, True, f"connected; files checked {route}")
    detail = "; ".join(errors) or "no route"
    return DeviceVerdict(device.name, Verdict.UNREACHABLE, connected, detail)


def verify(  # noqa: PLR0913 - keyword-only knobs, each with a default
    session: DeviceSession,
    factory: SessionFactory,
    expected: Sequence[Expected],
    *,
    fmc_uuid: str,
    ca_pem: bytes,
    policy: PollPolicy = PollPolicy(),
    now_utc: Callable[[], datetime] = lambda: datetime.now(UTC),
    workers: int = 32,
) -> VerifyOutcome:
    """Poll the FMC, then judge each expected peer from its push record, or by reading its files (in
    parallel, `workers` sessions at once) where the record cannot answer; never raises for a peer's state."""
    connected, polls = poll_connected(session, expected, policy)
    verdicts: dict[str, DeviceVerdict] = {}
    to_read: list[Expected] = []
    for e in expected:
        if e.recorded is None or e.refused is not None or from_record(e.recorded, ca_pem, now_utc()):
            to_read.append(e)
            continue
        is_up = e.name in connected
        verdicts[e.name] = (
            DeviceVerdict(
                e.name, Verdict.VERIFIED, True, f"connected; files checked by its push {e.recorded.route}"
            )
            if is_up
            else DeviceVerdict(
                e.name, Verdict.NOT_CONNECTED, False, "holds the new files (its push read them); tunnel down"
            )
        )

    def inspect(e: Expected) -> DeviceVerdict:
        return inspect_device(
            factory, e, fmc_uuid=fmc_uuid, ca_pem=ca_pem, connected=e.name in connected, now_utc=now_utc()
        )

    if to_read:
        with ThreadPoolExecutor(
            max_workers=max(1, min(workers, len(to_read))), thread_name_prefix="verify"
        ) as pool:
            verdicts.update((v.name, v) for v in pool.map(inspect, to_read))
    return VerifyOutcome(session.device, polls, tuple(verdicts[e.name] for e in expected))
