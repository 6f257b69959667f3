"""Step 4, push: one peer (an FTD, or the other FMC as HA peer) gets its three new files; sftunnel restarts.

Decide first (`decide_push`, pure), from what the peer holds and what the record says this renewal did to it:
- files not new: keep a timestamped copy of the three files on the device, write the new ones in one command
  (temp files in the same folder, SHA-256 checked on the device, mode 644 root:root, renamed, read back by
  SHA-256), then `pmtool restartbyid sftunnel` so the tunnel re-handshakes with them;
- files new and never written by this renewal: generate_certs.pl pushed them over a live tunnel, which picks
  them up at its next reconnect, as on the device: skip;
- files new, written by this renewal, and restarted after that write: an earlier attempt finished: skip;
- files new, written by this renewal, and no restart recorded after it: the connection (or the worker) died
  between the write and the restart: restart only. Without this, the device would keep its old sftunnel
  process, and its old certificates in memory, until someone restarts it by hand.

The write and the restart are facts the caller records (`RestartFacts`): the step says when, through two
callbacks, and the caller keeps them where it keeps things (the Celery task in the database, the in-process
runner in memory). The intent to write is reported before the first file changes, so a crash between the write
and the record cannot hide a write; the restart right after `pmtool` returned 0.

After the ladder (CLISH, expert, sudo, the history check), a write is four command round trips (read the
files, keep copies, write, restart), a skip one. What the device holds when the push ends goes into its
outcome (`PushOutcome.held`), read or read back in the push's own session, so verify need not log in again.

A push whose session never opened (host key, authentication, sudo, unreachable) wrote nothing: it raises
`PushRefusedError`, and its outcome is `PushAction.REFUSED`, so the record can say so.

Routes and retries are the flow's decisions (`pipeline.flow.next_attempt` and its one `RetryPolicy`):
`push_with_routes` is the in-process runner's loop over
them; the Celery push task calls `push_once` once per attempt and lets Celery retry after the flow's delay.
"""

from __future__ import annotations

import enum
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from pipeline.certs import CertFacts, KeyFacts, key_works_with
from pipeline.devicepaths import PEER_CA, PEER_CERT, PEER_KEY, PUSHED_FILES, peer_dir
from pipeline.devices.factory import SessionFactory
from pipeline.devices.files import read_files
from pipeline.devices.session import TEMP_GLOB, DeviceSession, Route
from pipeline.errors import DeviceError, PushRefusedError, can_retry
from pipeline.flow import Attempt, next_attempt
from pipeline.flow import RetryPolicy as FlowRetryPolicy
from pipeline.material import FilesBefore, PeerMaterial

RESTART_COMMAND = "pmtool restartbyid sftunnel"


class PushAction(enum.Enum):
    """What a push does to one peer. `decide_push` answers SKIP, WRITE or RESTART; REFUSED is only an
    outcome (the session never opened, nothing was written)."""

    SKIP = "skip"
    WRITE = "write"
    RESTART = "restart"
    REFUSED = "refused"


@dataclass(frozen=True)
class HeldFiles:
    """Fingerprints of what a peer holds for one FMC (None where a file is missing or unreadable)."""

    ca_sha256: str | None
    cert_sha256: str | None
    key_matches_cert: bool


@dataclass(frozen=True)
class RestartFacts:
    """What this renewal recorded about one peer's files for one FMC, over all its attempts and rounds.

    `write_started_at_utc`: when a write of the three files began (recorded before the first file changed).
    `restarted_at_utc`: when sftunnel was restarted after the latest write (None until then: recording a new
    write clears it, so no clock of another worker is ever compared with this one's)."""

    write_started_at_utc: datetime | None = None
    restarted_at_utc: datetime | None = None

    @property
    def restart_owed(self) -> bool:
        """This renewal began writing the files and no restart followed."""
        return self.write_started_at_utc is not None and self.restarted_at_utc is None


def decide_push(held: HeldFiles, wanted: PeerMaterial, recorded: RestartFacts) -> PushAction:
    """SKIP, WRITE or RESTART (see the module docstring for why each)."""
    new = (
        held.ca_sha256 == wanted.ca_sha256
        and held.cert_sha256 == wanted.cert_sha256
        and held.key_matches_cert
    )
    if not new:
        return PushAction.WRITE
    return PushAction.RESTART if recorded.restart_owed else PushAction.SKIP


@dataclass(frozen=True)
class PushOutcome:
    device: str
    action: PushAction
    route: Route | None
    attempts: int
    ok: bool
    error_kind: str | None = None
    #: What the operator reads in the record: the error, or what a successful push did when it is not plain.
    message: str | None = None
    backup_suffix: str | None = None
    #: What the device holds for the FMC when the push ended, as read (or written and read back) in its
    #: session: what verify checks without logging in again.
    held: HeldFiles | None = None


#: The record's message for each way a push can succeed (None: a plain write and restart says nothing more).
SKIPPED_LIVE = "already holds the new CA and certificate (pushed by generate_certs.pl over its tunnel)"
SKIPPED_DONE = "already holds the new files, written and restarted by an earlier attempt"
RESTARTED_ONLY = "files already new (written by an earlier attempt); sftunnel restarted"


def read_held(session: DeviceSession, fmc_uuid: str, wanted: PeerMaterial | None = None) -> HeldFiles:
    """What the peer holds for the FMC, in one command. With `wanted`, the key is checked (some 40 ms of CPU
    for an RSA key) only when the CA and certificate are the wanted ones: otherwise the files are written
    whatever the key, and `key_matches_cert` is False without a check."""
    return held_of(read_peer_files(session, fmc_uuid), wanted)


def read_peer_files(session: DeviceSession, fmc_uuid: str) -> dict[str, bytes]:
    """The peer's three files for the FMC, in one command: name in the folder -> bytes (a missing file is
    absent). The key's bytes stay in this process: digested, never logged."""
    folder = peer_dir(fmc_uuid)
    files = read_files(session, [f"{folder}/{name}" for name in (PEER_CA, PEER_CERT, PEER_KEY)])
    return {path.rpartition("/")[2]: data for path, data in files.items()}


def held_of(files: Mapping[str, bytes], wanted: PeerMaterial | None = None) -> HeldFiles:
    """`read_held` over files already read (name -> bytes)."""
    ca = _facts(files.get(PEER_CA))
    cert = _facts(files.get(PEER_CERT))
    key_ok = False
    key_pem = files.get(PEER_KEY)
    needed = wanted is None or (
        ca is not None
        and cert is not None
        and (ca.sha256, cert.sha256) == (wanted.ca_sha256, wanted.cert_sha256)
    )
    if needed and cert is not None and key_pem is not None:
        try:
            key_ok = key_works_with(files[PEER_CERT], key_pem)
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
    session: DeviceSession,
    *,
    fmc_uuid: str,
    material: PeerMaterial,
    backup_stamp_utc: datetime,
    recorded: RestartFacts,
    on_write_started: Callable[[FilesBefore], None],
    on_restarted: Callable[[], None],
) -> PushOutcome:
    """Push over an open root session; raises DeviceError on failure (the files stay old or new).

    `recorded` is what the caller's record says this renewal did to the peer; `on_write_started` is called
    before anything on the device changes, with what the peer held then (`FilesBefore`: the copies' suffix and
    each file's SHA-256, which `sftrenew restore` checks the copies against), and must have recorded the
    intent when it returns (raise to stop the push), `on_restarted` right after the restart succeeded.

    `backup_stamp_utc` names the copies kept on the device (`<file>.sftrenew-<stamp>.bak`). Callers pass
    one stamp per renewal, and an existing copy is never overwritten, so the copies hold the files as they
    were before the renewal's first attempt, whatever later attempts did."""
    before_files = read_peer_files(session, fmc_uuid)
    held = held_of(before_files, material)
    action = decide_push(held, material, recorded)
    if action is PushAction.SKIP:
        message = SKIPPED_DONE if recorded.write_started_at_utc is not None else SKIPPED_LIVE
        return PushOutcome(session.device, action, session.route, 1, ok=True, message=message, held=held)
    if action is PushAction.RESTART:
        session.run(RESTART_COMMAND)
        on_restarted()
        return PushOutcome(
            session.device, action, session.route, 1, ok=True, message=RESTARTED_ONLY, held=held
        )
    folder = peer_dir(fmc_uuid)
    suffix = backup_suffix(backup_stamp_utc)
    names = " ".join(shlex.quote(n) for n in PUSHED_FILES)
    on_write_started(FilesBefore.of(folder, suffix, before_files))
    # Temp files an interrupted write left behind (TEMP_GLOB) go first, then a copy of what is there now;
    # then the three files in one command, checked by SHA-256 on the device and read back.
    session.run(
        f"cd {shlex.quote(folder)} && rm -f {TEMP_GLOB} && for f in {names}; do "
        f'if [ -f "$f" ] && [ ! -e "$f{suffix}" ]; then cp -p "$f" "$f{suffix}"; fi; done'
    )
    session.write_files_atomic(
        {f"{folder}/{name}": data for name, data in material.files().items()}, mode=0o644, owner="root:root"
    )
    session.run(RESTART_COMMAND)
    on_restarted()
    return PushOutcome(
        session.device,
        action,
        session.route,
        1,
        ok=True,
        backup_suffix=suffix,
        held=HeldFiles(material.ca_sha256, material.cert_sha256, material_key_matches(material)),
    )


def backup_suffix(backup_stamp_utc: datetime) -> str:
    """The suffix of the copies a renewal keeps on the device: `<file>.sftrenew-<stamp>.bak`."""
    return f".sftrenew-{backup_stamp_utc:%Y%m%dT%H%M%SZ}.bak"


def material_key_matches(material: PeerMaterial) -> bool:
    """Whether the material's key is the certificate's (what the device holds once the write read back).
    The regeneration proved the key with a signature (`certs.key_works_with`) before storing it; its public
    half is what is compared here."""
    try:
        cert = CertFacts.from_pem(material.cert_pem)
        key = KeyFacts.from_pem(material.key_pem, checked=False)
    except ValueError:
        return False
    return key.public_key_sha256 == cert.public_key_sha256


def push_once(  # noqa: PLR0913 - keyword-only, passed on to push_files
    factory: SessionFactory,
    device: str,
    route: Route,
    *,
    fmc_uuid: str,
    material: PeerMaterial,
    backup_stamp_utc: datetime,
    recorded: RestartFacts,
    on_write_started: Callable[[FilesBefore], None],
    on_restarted: Callable[[], None],
) -> PushOutcome:
    """One attempt by one route: open, push, close. A session that does not open is a PushRefusedError."""
    try:
        session = factory.open(device, route)
    except DeviceError as exc:
        raise PushRefusedError.of(exc) from exc
    try:
        return push_files(
            session,
            fmc_uuid=fmc_uuid,
            material=material,
            backup_stamp_utc=backup_stamp_utc,
            recorded=recorded,
            on_write_started=on_write_started,
            on_restarted=on_restarted,
        )
    finally:
        session.close()


@dataclass
class FactsInMemory:
    """The facts of one peer's push kept for one run, where there is no database (the in-process runner):
    enough for an attempt that lost its connection between the write and the restart to be finished by the
    next one."""

    facts: RestartFacts = field(default_factory=RestartFacts)
    #: What the peer held before the run's first write (kept from the first write only, as the record does).
    before: FilesBefore | None = None

    def write_started(self, before: FilesBefore) -> None:
        self.facts = RestartFacts(write_started_at_utc=datetime.now(UTC))
        self.before = self.before or before

    def restarted(self) -> None:
        self.facts = replace(self.facts, restarted_at_utc=datetime.now(UTC))


@dataclass(frozen=True)
class RetryPolicy(FlowRetryPolicy):
    """The flow's retry policy (`pipeline.flow.RetryPolicy`: routes, backoff, jitter), plus how the
    in-process runner waits between attempts (a Celery task waits with a countdown instead)."""

    sleep: Callable[[float], None] = time.sleep


def push_with_routes(
    factory: SessionFactory,
    device: str,
    *,
    fmc_uuid: str,
    material: PeerMaterial,
    backup_stamp_utc: datetime,
    policy: RetryPolicy = RetryPolicy(),
    facts: FactsInMemory | None = None,
) -> PushOutcome:
    """The in-process runner's push: the attempts `pipeline.flow.next_attempt` decides (direct first, then
    the jump server, retrying only what a retry can fix, after the flow's backoff), the same decisions the
    Celery push task executes; never raises DeviceError. `facts` carries what earlier attempts did across
    attempts (a fresh record when None)."""
    facts = facts if facts is not None else FactsInMemory()
    routes = factory.routes_for(device)
    decided = next_attempt(routes, 0, True, policy)
    attempt = 0
    last: DeviceError | None = None
    tried: Route | None = None
    while isinstance(decided, Attempt):
        if decided.delay_s:
            policy.sleep(decided.delay_s)
        attempt, tried = decided.number, decided.route
        try:
            outcome = push_once(
                factory,
                device,
                tried,
                fmc_uuid=fmc_uuid,
                material=material,
                backup_stamp_utc=backup_stamp_utc,
                recorded=facts.facts,
                on_write_started=facts.write_started,
                on_restarted=facts.restarted,
            )
        except DeviceError as exc:
            last = exc
            decided = next_attempt(routes, attempt, can_retry(exc), policy)
            continue
        return replace(outcome, route=tried, attempts=attempt)
    if isinstance(last, PushRefusedError):
        return PushOutcome(
            device,
            PushAction.REFUSED,
            tried,
            attempt,
            ok=False,
            error_kind=last.cause_kind,
            message=str(last),
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
