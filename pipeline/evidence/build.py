"""The evidence pack from a renewal's record, already read (pure: rows in, an `EvidencePack` out).

It reads what the steps recorded and nothing else: the renewal and its FMCs, every step run, the events, the
artifacts (only the plain ones are opened: the CA certificates and validate's documents; a sealed artifact
is told by its path and SHA-256, its content never touched), the push facts (write, restart, what was held)
and the push rounds. The per-device summary (last push, route, verdict) is the one `sftrenew status` shows
(`pipeline.report.device_lines`), so the pack and the status table cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from pipeline.certs import CertFacts, CertificateError
from pipeline.devicepaths import CA_CERT, PEER_CA, PEER_CERT, PEER_KEY, peer_dir
from pipeline.evidence.model import (
    Attempt,
    CaFacts,
    DeviceEvidence,
    EventFacts,
    EvidencePack,
    FmcEvidence,
    HeldFacts,
    PeerAfter,
    PeerBefore,
    PeerFile,
    Refusal,
    RegenerationFacts,
    RenewalFacts,
    RoundFacts,
    StoredFile,
    ValidationFacts,
)
from pipeline.records import ValidateRecord
from pipeline.report import NO_OUTCOME_STATES, DeviceLine, device_lines
from pipeline.store import (
    Artifact,
    PeerHeld,
    PushRestart,
    PushSlot,
    Renewal,
    RenewalEvent,
    RenewalFmc,
    StepRun,
)
from pipeline.store.tables import STEPS


@dataclass(frozen=True)
class RenewalRecord:
    """Everything recorded about one renewal, as the store returns it (`sftrenew.reporting.read_record`)."""

    renewal: Renewal
    fmcs: Sequence[RenewalFmc]
    steps: Sequence[StepRun]
    events: Sequence[RenewalEvent]
    artifacts: Sequence[Artifact]
    restarts: Sequence[PushRestart]
    held: Sequence[PeerHeld]
    slots: Sequence[PushSlot]


def build_pack(record: RenewalRecord, *, generated_at_utc: datetime, generator: str) -> EvidencePack:
    """The pack of `record`, as of `generated_at_utc` (aware UTC), made by `generator` (name and version)."""
    row = record.renewal
    return EvidencePack(
        generated_at_utc=generated_at_utc,
        generator=generator,
        renewal=RenewalFacts(
            id=row.id,
            pair=row.pair,
            state=row.state,
            requested_by=row.requested_by,
            requested_at_utc=row.requested_at_utc,
            finished_at_utc=row.finished_at_utc,
        ),
        fmcs=tuple(_fmc(record, fmc) for fmc in record.fmcs),
        events=tuple(
            EventFacts(
                at_utc=e.at_utc, action=e.action, who=e.who, fmc=e.fmc, device=e.device, detail=e.detail
            )
            for e in record.events
        ),
    )


def _fmc(record: RenewalRecord, fmc: RenewalFmc) -> FmcEvidence:
    notes: list[str] = []
    artifacts = [a for a in record.artifacts if a.fmc == fmc.fmc]
    steps = [s for s in record.steps if s.fmc == fmc.fmc]
    backups = [a for a in artifacts if a.kind == "backup" and a.device is None]
    ca_before = _ca(fmc.ca_before_sha256, [a for a in backups if a.path == CA_CERT], "before", notes)
    ca_after = _ca(fmc.ca_after_sha256, [a for a in artifacts if a.kind == "new_ca"], "after", notes)
    return FmcEvidence(
        name=fmc.fmc,
        role=fmc.role,
        state=fmc.state,
        uuid=fmc.fmc_uuid,
        ca_before=ca_before,
        ca_after=ca_after,
        regeneration=RegenerationFacts(
            claimed_at_utc=fmc.regen_claimed_at_utc,
            intent_at_utc=fmc.regen_intent_at_utc,
            done_at_utc=fmc.regen_done_at_utc,
        ),
        backup=tuple(
            StoredFile(path=a.path, sha256=a.sha256, sealed=a.secret, kept_at_utc=a.created_at_utc)
            for a in backups
        ),
        plan_at_enqueue=_validation(artifacts, "plan", notes),
        validation_before=_validation(artifacts, "validate", notes),
        validation_after=_after(steps),
        steps=tuple(_attempt(s) for s in _ordered(s for s in steps if s.device is None)),
        devices=tuple(_devices(record, fmc, artifacts, steps)),
        notes=tuple(notes),
    )


def _plain(artifact: Artifact) -> bytes | None:
    """The content of a plain artifact; None for a sealed one, whose content a pack never reads."""
    return None if artifact.secret else artifact.data


def _ca(recorded: str | None, candidates: Sequence[Artifact], when: str, notes: list[str]) -> CaFacts | None:
    """The CA the record names by fingerprint, with its facts from the certificate kept (the one with that
    fingerprint, else the newest), or the fingerprint alone when none reads."""
    facts = []
    for artifact in candidates:
        data = _plain(artifact)
        if data is None:
            continue
        try:
            facts.append(CertFacts.from_pem(data))
        except CertificateError:
            notes.append(f"the CA {when} kept at {artifact.path} does not read as a certificate")
    chosen = next((f for f in facts if f.sha256 == recorded), facts[-1] if facts else None)
    if chosen is None:
        return CaFacts(sha256=recorded) if recorded else None
    if recorded is not None and chosen.sha256 != recorded:
        notes.append(f"the CA {when} kept has fingerprint {chosen.sha256}, the record names {recorded}")
    return CaFacts(
        sha256=chosen.sha256,
        subject=chosen.subject_text,
        issuer=chosen.issuer_text,
        serial=str(chosen.serial),
        version=chosen.version,
        not_before_utc=chosen.not_before_utc,
        not_after_utc=chosen.not_after_utc,
    )


def _validation(artifacts: Sequence[Artifact], kind: str, notes: list[str]) -> ValidationFacts | None:
    """The newest validate-shaped document of `kind` (validate's own, or the plan at enqueue), as parsed."""
    found = [a for a in artifacts if a.kind == kind and a.device is None and not a.secret]
    data = _plain(found[-1]) if found else None
    if data is None:
        return None
    try:
        record = ValidateRecord.model_validate_json(data)
    except ValidationError as exc:
        notes.append(
            f"the {kind} document {found[-1].path} does not read back ({exc.error_count()} problems)"
        )
        return None
    return ValidationFacts(
        fmc_uuid=record.fmc_uuid,
        ca_days_left=record.ca_days_left,
        peers=tuple(
            PeerBefore(
                name=p.name,
                host=p.host,
                uuid=p.uuid,
                tunnel=p.tunnel,
                routes=p.routes,
                action=p.action.value,
                refusal=Refusal(kind=p.refusal.kind, route=p.refusal.route, detail=p.refusal.detail)
                if p.refusal is not None
                else None,
            )
            for p in record.peers
        ),
    )


def _ordered(steps: Iterable[StepRun]) -> list[StepRun]:
    """Attempts as they happened: by start, then in the flow's order of steps."""
    rank = {name: index for index, name in enumerate(STEPS)}
    return sorted(steps, key=lambda s: (s.started_at_utc, rank.get(s.step, len(rank)), s.attempt, s.id or 0))


def _attempt(run: StepRun) -> Attempt:
    return Attempt(
        step=run.step,
        attempt=run.attempt,
        state=run.state,
        route=run.route,
        started_at_utc=run.started_at_utc,
        finished_at_utc=run.finished_at_utc,
        error_kind=run.error_kind,
        message=run.message,
        who=run.who,
        task_id=run.task_id,
    )


def _after(steps: Sequence[StepRun]) -> tuple[PeerAfter, ...]:
    """Per peer, the newest verify verdict that says something (duplicates that stood aside say nothing)."""
    latest: dict[str, StepRun] = {}
    for run in steps:
        if run.step != "verify" or run.device is None or run.state in NO_OUTCOME_STATES:
            continue
        if run.device not in latest or run.attempt > latest[run.device].attempt:
            latest[run.device] = run
    return tuple(
        PeerAfter(
            name=name,
            verdict="verified" if run.state == "succeeded" else (run.error_kind or run.state),
            detail=run.message,
            checked_at_utc=run.finished_at_utc,
        )
        for name, run in sorted(latest.items())
    )


def _devices(
    record: RenewalRecord, fmc: RenewalFmc, artifacts: Sequence[Artifact], steps: Sequence[StepRun]
) -> list[DeviceEvidence]:
    restarts = {r.device: r for r in record.restarts if r.fmc == fmc.fmc}
    held = {h.device: h for h in record.held if h.fmc == fmc.fmc}
    slots = [s for s in record.slots if s.fmc == fmc.fmc]
    lines = {line.device: line for line in device_lines(steps)}
    names = sorted(
        {s.device for s in steps if s.device is not None}
        | {s.device for s in slots}
        | set(restarts)
        | set(held)
    )
    new_ca = [a for a in artifacts if a.kind == "new_ca"]
    return [
        DeviceEvidence(
            name=name,
            push=_line(lines, name, "push"),
            route=_line(lines, name, "route"),
            verdict=_line(lines, name, "verdict"),
            attempts=tuple(_attempt(s) for s in _ordered(s for s in steps if s.device == name)),
            folder=peer_dir(fmc.fmc_uuid) if fmc.fmc_uuid else None,
            files=_peer_files(
                new_ca, [a for a in artifacts if a.kind == "peer_material" and a.device == name]
            ),
            write_started_at_utc=restarts[name].write_started_at_utc if name in restarts else None,
            restarted_at_utc=restarts[name].restarted_at_utc if name in restarts else None,
            held=_held(held.get(name)),
            rounds=tuple(
                RoundFacts(round=s.round, outcome=s.outcome, settled_at_utc=s.settled_at_utc)
                for s in slots
                if s.device == name
            ),
        )
        for name in names
    ]


def _line(lines: dict[str, DeviceLine], name: str, field: str) -> str | None:
    line = lines.get(name)
    value = getattr(line, field) if line is not None else None
    return None if value in (None, "-") else str(value)


def _peer_files(new_ca: Sequence[Artifact], material: Sequence[Artifact]) -> tuple[PeerFile, ...]:
    """The three files the peer is to hold for the FMC: the new CA and the certificate and key made for it
    (the newest of each, as a push reads them); none when the FMC made the peer no certificate."""
    files: dict[str, PeerFile] = {}
    if new_ca and material:
        files[PEER_CA] = PeerFile(name=PEER_CA, sha256=new_ca[-1].sha256, sealed=new_ca[-1].secret)
    for artifact in material:
        name = artifact.path.rsplit("/", 1)[-1]
        if name in (PEER_CERT, PEER_KEY):
            files[name] = PeerFile(name=name, sha256=artifact.sha256, sealed=artifact.secret)
    return tuple(files[n] for n in (PEER_CA, PEER_CERT, PEER_KEY) if n in files)


def _held(row: PeerHeld | None) -> HeldFacts | None:
    if row is None:
        return None
    return HeldFacts(
        ca_sha256=row.ca_sha256,
        cert_sha256=row.cert_sha256,
        key_matches_cert=row.key_matches_cert,
        route=row.route,
        checked_at_utc=row.checked_at_utc,
    )
