"""Step 4, push: one peer (an FTD, or the other FMC as HA peer) gets its three new files.

Decide first: a peer that already holds the new CA and its new certificate (generate_certs.pl pushed them over
a live tunnel, or an earlier attempt did) is skipped. Otherwise, on the device: keep a timestamped copy of the
three files, write each new one atomically (temp file in the same folder, SHA-256 checked on the device, mode
644 root:root, rename), then `pmtool restartbyid sftunnel` so the tunnel re-handshakes with them. A push that
fails half-way leaves every file either old or new, and running it again finishes the job.

Routes: `next_route` is the pure rule (direct for the first attempts, then the jump server);
`push_with_routes` is the in-process loop the step runner uses; Celery tasks call `push_once` per attempt and
let Celery retry.
"""

from __future__ import annotations

import enum
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline.certs import CertFacts, KeyFacts
from pipeline.devicepaths import PEER_CA, PEER_CERT, PEER_KEY, PUSHED_FILES, peer_dir
from pipeline.devices.factory import SessionFactory
from pipeline.devices.files import read_files
from pipeline.devices.session import TEMP_GLOB, DeviceSession, Route
from pipeline.errors import DeviceError, DeviceUnreachableError
from pipeline.material import PeerMaterial


class PushAction(enum.Enum):
    SKIP = "skip"
    WRITE = "write"


@dataclass(frozen=True)
class HeldFiles:
    """Fingerprints of what a peer holds for one FMC (None where a file is missing or unreadable)."""

    ca_sha256: str | None
    cert_sha256: str | None
    key_matches_cert: bool


def decide_push(held: HeldFiles, wanted: PeerMaterial) -> PushAction:
    if (
        held.ca_sha256 == wanted.ca_sha256
        and held.cert_sha256 == wanted.cert_sha256
        and held.key_matches_cert
    ):
        return PushAction.SKIP
    return PushAction.WRITE


def next_route(routes: Sequence[Route], attempt: int, *, direct_attempts: int) -> Route | None:
    """The route for the 1-based `attempt`: the first route `direct_attempts` times, then each later route
    once; None when every route has had its turn."""
    if not routes or attempt < 1:
        return None
    if attempt <= direct_attempts:
        return routes[0]
    later = attempt - direct_attempts
    return routes[later] if later < len(routes) else None


@dataclass(frozen=True)
class PushOutcome:
    device: str
    action: PushAction
    route: Route | None
    attempts: int
    ok: bool
    error_kind: str | None = None
    message: str | None = None
    backup_suffix: str | None = None


def read_held(session: DeviceSession, fmc_uuid: str) -> HeldFiles:
    folder = peer_dir(fmc_uuid)
    files = read_files(session, [f"{folder}/{name}" for name in (PEER_CA, PEER_CERT, PEER_KEY)])
    ca = _facts(files.get(f"{folder}/{PEER_CA}"))
    cert = _facts(files.get(f"{folder}/{PEER_CERT}"))
    key_ok = False
    key_pem = files.get(f"{folder}/{PEER_KEY}")
    if cert is not None and key_pem is not None:
        try:
            key_ok = KeyFacts.from_pem(key_pem).public_key_sha256 == cert.public_key_sha256
        except ValueError:
            key_ok = False
    return HeldFiles(ca.sha256 if ca else None, cert.sha256 if cert else None, key_ok)


def _facts(pem: bytes | None) -> CertFacts | None:
    if pem is None:
        return None
    try:
        return CertFacts.from_pem(pem)
    except ValueError:
        return None


def push_files(
    session: DeviceSession, *, fmc_uuid: str, material: PeerMaterial, backup_stamp_utc: datetime
) -> PushOutcome:
    """Push over an open root session; raises DeviceError on failure (the files stay old or new).

    `backup_stamp_utc` names the copies kept on the device (`<file>.sftrenew-<stamp>.bak`). Callers pass
    one stamp per renewal, and an existing copy is never overwritten, so the copies hold the files as they
    were before the renewal's first attempt, whatever later attempts did."""
    action = decide_push(read_held(session, fmc_uuid), material)
    if action is PushAction.SKIP:
        return PushOutcome(session.device, action, session.route, 1, ok=True)
    folder = peer_dir(fmc_uuid)
    suffix = f".sftrenew-{backup_stamp_utc:%Y%m%dT%H%M%SZ}.bak"
    names = " ".join(shlex.quote(n) for n in PUSHED_FILES)
    # Temp files an interrupted write left behind (TEMP_GLOB) go first; then a copy of what is there now.
    session.run(f"cd {shlex.quote(folder)} && rm -f {TEMP_GLOB}")
    session.run(
        f"cd {shlex.quote(folder)} && for f in {names}; do "
        f'if [ -f "$f" ] && [ ! -e "$f{suffix}" ]; then cp -p "$f" "$f{suffix}"; fi; done'
    )
    for name, data in material.files().items():
        session.write_file_atomic(f"{folder}/{name}", data, mode=0o644, owner="root:root")
    if decide_push(read_held(session, fmc_uuid), material) is not PushAction.SKIP:
        raise DeviceUnreachableError(
            session.device, str(session.route), "files read back differ after the write"
        )
    session.run("pmtool restartbyid sftunnel")
    return PushOutcome(session.device, action, session.route, 1, ok=True, backup_suffix=suffix)


def push_once(
    factory: SessionFactory,
    device: str,
    route: Route,
    *,
    fmc_uuid: str,
    material: PeerMaterial,
    backup_stamp_utc: datetime,
) -> PushOutcome:
    """One attempt by one route: open, push, close."""
    session = factory.open(device, route)
    try:
        return push_files(session, fmc_uuid=fmc_uuid, material=material, backup_stamp_utc=backup_stamp_utc)
    finally:
        session.close()


@dataclass(frozen=True)
class RetryPolicy:
    """How often the direct route is tried before the jump server, and the pause between attempts."""

    direct_attempts: int = 2
    backoff_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep


def push_with_routes(
    factory: SessionFactory,
    device: str,
    *,
    fmc_uuid: str,
    material: PeerMaterial,
    backup_stamp_utc: datetime,
    policy: RetryPolicy = RetryPolicy(),
) -> PushOutcome:
    """Direct first, then the jump server, retrying only what a retry can fix; never raises DeviceError."""
    routes = factory.routes_for(device)
    attempt = 0
    last: DeviceError | None = None
    tried: Route | None = None
    while (route := next_route(routes, attempt + 1, direct_attempts=policy.direct_attempts)) is not None:
        attempt, tried = attempt + 1, route
        try:
            outcome = push_once(
                factory,
                device,
                route,
                fmc_uuid=fmc_uuid,
                material=material,
                backup_stamp_utc=backup_stamp_utc,
            )
        except DeviceError as exc:
            last = exc
            if not exc.retryable:
                break
            if next_route(routes, attempt + 1, direct_attempts=policy.direct_attempts) is not None:
                policy.sleep(policy.backoff_s * attempt)
            continue
        return PushOutcome(
            device, outcome.action, route, attempt, ok=True, backup_suffix=outcome.backup_suffix
        )
    kind = type(last).__name__ if last is not None else "NoRouteError"
    return PushOutcome(
        device,
        PushAction.WRITE,
        tried,
        attempt,
        ok=False,
        error_kind=kind,
        message=str(last) if last is not None else "the device has no route",
    )
