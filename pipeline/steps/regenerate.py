"""Step 3, regenerate: `generate_certs.pl` on the FMC, exactly once per renewal.

`decide_regeneration` is the whole of "exactly once", as a pure function: the FMC still holds the CA the
renewal started from -> run; it holds the CA this renewal created (known, or provably made after this renewal
claimed the regeneration) -> do not run again, read the result back; anything else -> a CA nobody here knows
about: stop. The act part answers both prompts, parses the output and FAILED_PUSH, and reads back the new CA,
the FMC's cert and every peer's new `certs_pushed/` cert and key, checking with cryptography that each is
issued by the new CA and matches its key.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.certs import CertFacts, KeyFacts, is_internal_ca_of, issued_by, key_matches
from pipeline.devicepaths import (
    CA_CERT,
    CERTS_RUNS,
    PEER_CERT,
    PEER_KEY,
    PEERS_DIR,
    SFTUNNEL_CERT,
    SFTUNNEL_KEY,
    certs_pushed,
)
from pipeline.devices.files import list_files, read_files, read_tree
from pipeline.devices.session import Answer, DeviceSession
from pipeline.errors import CommandFailedError, ForeignCAError
from pipeline.material import PeerMaterial
from pipeline.parsing import FailedPush, parse_failed_push, parse_generate_certs

CONTINUE = r"Do you want to continue\? \[yes/no\]:"
#: A CA whose notBefore is this close before the renewal's claim still counts as made after it (clock skew).
CLOCK_SKEW = timedelta(minutes=5)


class RegenDecision(enum.Enum):
    RUN = "run"
    ALREADY_DONE = "already done"
    FOREIGN_CA = "foreign CA"


def decide_regeneration(
    *,
    current_sha256: str,
    current_not_before_utc: datetime,
    started_from_sha256: str,
    created_sha256: str | None,
    claimed_at_utc: datetime | None,
) -> RegenDecision:
    """`claimed_at_utc`: when this renewal claimed the regeneration (None if it never did). A CA made after
    that claim is this renewal's even if its fingerprint was never recorded (a worker killed right after
    generate_certs.pl)."""
    if current_sha256 == started_from_sha256:
        return RegenDecision.RUN
    if created_sha256 is not None:
        return RegenDecision.ALREADY_DONE if current_sha256 == created_sha256 else RegenDecision.FOREIGN_CA
    if claimed_at_utc is not None and current_not_before_utc >= claimed_at_utc - CLOCK_SKEW:
        return RegenDecision.ALREADY_DONE
    return RegenDecision.FOREIGN_CA


@dataclass(frozen=True)
class RegenOutcome:
    fmc: str
    ran: bool
    old_ca_sha256: str
    new_ca_sha256: str
    new_ca_not_after_utc: datetime
    ca_pem: bytes
    peers: tuple[PeerMaterial, ...]
    failed_pushes: tuple[FailedPush, ...]
    failed_push_path: str | None

    def peer(self, uuid: str) -> PeerMaterial:
        for material in self.peers:
            if material.peer_uuid == uuid:
                return material
        raise KeyError(uuid)


def regenerate(
    session: DeviceSession,
    *,
    fmc_uuid: str,
    started_from_sha256: str,
    created_sha256: str | None = None,
    claimed_at_utc: datetime | None = None,
    timeout: float = 900.0,
) -> RegenOutcome:
    """Run (or adopt) the regeneration on this FMC; raise ForeignCAError on a CA we did not make."""
    current = CertFacts.from_pem(session.read_file(CA_CERT))
    decision = decide_regeneration(
        current_sha256=current.sha256,
        current_not_before_utc=current.not_before_utc,
        started_from_sha256=started_from_sha256,
        created_sha256=created_sha256,
        claimed_at_utc=claimed_at_utc,
    )
    if decision is RegenDecision.FOREIGN_CA:
        raise ForeignCAError(session.device, current.sha256, started_from_sha256)
    failed_path: str | None = None
    if decision is RegenDecision.RUN:
        failed_path = _run_generate_certs(session, timeout)
    else:
        failed_path = _newest_failed_push(session, current.not_before_utc)
    return read_back(
        session,
        fmc_uuid=fmc_uuid,
        ran=decision is RegenDecision.RUN,
        old_ca_sha256=started_from_sha256,
        failed_push_path=failed_path,
    )


def _run_generate_certs(session: DeviceSession, timeout: float) -> str | None:
    if not session.run("command -v generate_certs.pl", check=False).ok:
        raise CommandFailedError(
            session.device,
            str(session.route),
            "generate_certs.pl",
            127,
            "generate_certs.pl is not on this FMC: install the hotfix that provides it (Cisco FN74214)",
        )
    result = session.run(
        "generate_certs.pl", timeout=timeout, answers=(Answer(CONTINUE, "yes"), Answer(CONTINUE, "yes"))
    )
    report = parse_generate_certs(result.output)
    if report.aborted:
        raise CommandFailedError(session.device, str(session.route), "generate_certs.pl", 1, "Aborted.")
    return report.failed_push_path


def _newest_failed_push(session: DeviceSession, since_utc: datetime) -> str | None:
    """The FAILED_PUSH of the run that made the current CA: run folders are named by their start time."""
    found = list_files(session, (CERTS_RUNS,), names=("FAILED_PUSH",))
    runs = [p for p in found if re.fullmatch(re.escape(CERTS_RUNS) + r"/\d+/FAILED_PUSH", p)]
    floor = int((since_utc - CLOCK_SKEW).timestamp())
    recent = [p for p in runs if int(p.split("/")[4]) >= floor]
    return max(recent, key=lambda p: int(p.split("/")[4])) if recent else None


def read_back(
    session: DeviceSession, *, fmc_uuid: str, ran: bool, old_ca_sha256: str, failed_push_path: str | None
) -> RegenOutcome:
    """The new material, checked: the CA is this FMC's InternalCA; every cert is issued by it and matches
    its key."""
    files = read_files(
        session, [CA_CERT, SFTUNNEL_CERT, SFTUNNEL_KEY, *([failed_push_path] if failed_push_path else [])]
    )
    files.update(read_tree(session, (PEERS_DIR,), names=(PEER_CERT, PEER_KEY), path_glob="*/certs_pushed/*"))
    pushed = [p for p in files if p.startswith(PEERS_DIR + "/")]
    ca_pem = files[CA_CERT]
    ca = CertFacts.from_pem(ca_pem)
    problems: list[str] = []
    if not is_internal_ca_of(ca, fmc_uuid):
        problems.append(f"{CA_CERT} is not the InternalCA of FMC {fmc_uuid}")
    problems += _check_pair(ca_pem, files, SFTUNNEL_CERT, SFTUNNEL_KEY)
    peers = []
    for uuid in sorted({p.split("/")[4] for p in pushed}):
        cert_path, key_path = certs_pushed(uuid, PEER_CERT), certs_pushed(uuid, PEER_KEY)
        problems += _check_pair(ca_pem, files, cert_path, key_path)
        if cert_path in files and key_path in files:
            peers.append(
                PeerMaterial(
                    uuid,
                    ca_pem,
                    files[cert_path],
                    files[key_path],
                    ca.sha256,
                    CertFacts.from_pem(files[cert_path]).sha256,
                )
            )
    if problems:
        raise CommandFailedError(
            session.device, str(session.route), "read back new certificates", 1, "; ".join(problems)
        )
    failed = parse_failed_push(files[failed_push_path].decode()) if failed_push_path in files else ()
    return RegenOutcome(
        session.device,
        ran,
        old_ca_sha256,
        ca.sha256,
        ca.not_after_utc,
        ca_pem,
        tuple(peers),
        tuple(failed),
        failed_push_path,
    )


def _check_pair(ca_pem: bytes, files: dict[str, bytes], cert_path: str, key_path: str) -> list[str]:
    if cert_path not in files or key_path not in files:
        return [f"{cert_path} or {key_path} is missing"]
    problems = []
    if not issued_by(files[cert_path], ca_pem):
        problems.append(f"{cert_path} is not issued by the new CA")
    if not key_matches(CertFacts.from_pem(files[cert_path]), KeyFacts.from_pem(files[key_path])):
        problems.append(f"{key_path} does not match {cert_path}")
    return problems
