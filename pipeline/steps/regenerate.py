"""Step 3, regenerate: `generate_certs.pl` on the FMC, exactly once per renewal.

`decide_regeneration` is the whole of "exactly once", as a pure function: the FMC still holds the CA the
renewal started from -> run; it holds the CA this renewal created -> do not run again, read the result back;
anything else -> a CA nobody here knows about: stop.

"This renewal created it" is decided without clocks. It is the recorded new CA, or, when none was recorded (a
worker killed during or right after generate_certs.pl), any CA other than the backed-up one found after this
renewal recorded its intent to run generate_certs.pl: the caller records that intent (`record_intent`, a
committed database write) after finding the backed-up CA on the FMC and before running the script, and tells
later attempts (`intent_recorded`). A CA other than the backed-up one with no intent recorded is foreign,
whatever its dates say: a hand-made regeneration between the backup and this step stops the renewal with
ForeignCAError. What remains: a hand-made run inside a crashed attempt's own window (after its intent, before
the next attempt reads the CA) is taken for this renewal's. The FMC keeps no proof of who ran the script
(device-facts 11.5: what a run folder holds on a real FMC is unknown, and a hand-made run from the backed-up
CA would name it as the old one just as ours does), so nothing on it can tell the two apart.

The act part answers both prompts, parses the output and FAILED_PUSH, and reads back the new CA, the FMC's
cert and every peer's new `certs_pushed/` cert and key, checking with cryptography that each is issued by the
new CA and matches its key.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.certs import CertFacts, is_internal_ca_of, issued_by, key_works_with
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
#: Finding the FAILED_PUSH of the run that made an adopted CA: a run folder named up to this long before the
#: CA's notBefore is that run's (both times are the FMC's own clock). Never used to decide whose CA it is.
CLOCK_SKEW = timedelta(minutes=5)


class RegenDecision(enum.Enum):
    RUN = "run"
    ALREADY_DONE = "already done"
    FOREIGN_CA = "foreign CA"


def decide_regeneration(
    *, current_sha256: str, started_from_sha256: str, created_sha256: str | None, intent_recorded: bool
) -> RegenDecision:
    """`intent_recorded`: this renewal recorded, before this attempt read the FMC's CA, that it was about to
    run generate_certs.pl (so it ran, or may have run, it: a worker killed mid-run). Only then is a CA other
    than the backed-up one, with no new CA recorded, this renewal's. No clock takes part."""
    if current_sha256 == started_from_sha256:
        return RegenDecision.RUN
    if created_sha256 is not None:
        return RegenDecision.ALREADY_DONE if current_sha256 == created_sha256 else RegenDecision.FOREIGN_CA
    return RegenDecision.ALREADY_DONE if intent_recorded else RegenDecision.FOREIGN_CA


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


def _no_intent_to_record() -> None:
    """The in-process runner keeps no record: it only ever runs from the backed-up CA, in one process."""


def regenerate(
    session: DeviceSession,
    *,
    fmc_uuid: str,
    started_from_sha256: str,
    created_sha256: str | None = None,
    intent_recorded: bool = False,
    record_intent: Callable[[], None] = _no_intent_to_record,
    timeout: float = 900.0,
) -> RegenOutcome:
    """Run (or adopt) the regeneration on this FMC; raise ForeignCAError on a CA we did not make.

    `record_intent` is called, and must have committed, after the FMC was found on the backed-up CA and
    before generate_certs.pl runs; it raises to stop the run (another task took the claim over)."""
    current = CertFacts.from_pem(session.read_file(CA_CERT))
    decision = decide_regeneration(
        current_sha256=current.sha256,
        started_from_sha256=started_from_sha256,
        created_sha256=created_sha256,
        intent_recorded=intent_recorded,
    )
    if decision is RegenDecision.FOREIGN_CA:
        raise ForeignCAError(session.device, current.sha256, started_from_sha256)
    failed_path: str | None = None
    if decision is RegenDecision.RUN:
        record_intent()
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
    if not key_works_with(files[cert_path], files[key_path]):
        problems.append(f"{key_path} does not match {cert_path}")
    return problems
