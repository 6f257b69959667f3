"""The evidence pack's shape: what a change board or an auditor reads about one renewal (schema version 1).

Frozen and closed pydantic models, so a pack is exactly these fields and nothing else can ride along. Every
value comes from the record (`pipeline.evidence.build`); nothing in here is a secret: certificates are told
by their facts and fingerprints, files by their SHA-256, and a private key only by that digest and the fact
that it is sealed at rest.

Datetimes are aware UTC and end in `_utc`. A certificate's serial is a decimal string: CA serials run to 160
bits, past what most JSON readers keep exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict

#: Bumped whenever a field changes meaning or goes away; `sftrenew report --check` refuses versions it
#: does not know.
SCHEMA_VERSION: Final = 1


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CaFacts(_Model):
    """One FMC's InternalCA: `sha256` is its fingerprint (SHA-256 of the DER). Only the fingerprint is known
    when the certificate itself was not kept (the other fields are then None)."""

    sha256: str
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    version: int | None = None
    not_before_utc: datetime | None = None
    not_after_utc: datetime | None = None


class StoredFile(_Model):
    """A file a step copied off a device: where it was, the SHA-256 of its content as the device held it,
    and whether it is sealed at rest (a private key: its content is never in a pack)."""

    path: str
    sha256: str
    sealed: bool
    kept_at_utc: datetime


class PeerFile(_Model):
    """One of the three files a push writes to a peer for an FMC (`cacert.pem`, `sftunnel-cert.pem`,
    `sftunnel-key.pem`), by the SHA-256 of its content."""

    name: str
    sha256: str
    sealed: bool


class Refusal(_Model):
    kind: str
    route: str
    detail: str


class PeerBefore(_Model):
    """One peer as validate parsed it: its tunnel in `sftunnel_status.pl`, the SSH routes that opened a root
    shell, and what the plan decided for it."""

    name: str
    host: str
    uuid: str | None
    tunnel: str
    routes: tuple[str, ...]
    action: str
    refusal: Refusal | None


class ValidationFacts(_Model):
    fmc_uuid: str
    ca_days_left: int
    peers: tuple[PeerBefore, ...]


class PeerAfter(_Model):
    """One peer as verify judged it (its tunnel in `sftunnel_status.pl` and an X.509 check of what it
    holds): `verified`, or the verdict's kind, with the detail verify recorded."""

    name: str
    verdict: str
    detail: str | None
    checked_at_utc: datetime | None


class Attempt(_Model):
    """One attempt of one step, as recorded (`step_run`)."""

    step: str
    attempt: int
    state: str
    route: str | None
    started_at_utc: datetime
    finished_at_utc: datetime | None
    error_kind: str | None
    message: str | None
    who: str | None
    task_id: str | None


class RoundFacts(_Model):
    """How a device's push settled in one push round (a retry opens a new round)."""

    round: int
    outcome: str | None
    settled_at_utc: datetime | None


class HeldFacts(_Model):
    """What the latest successful push read back on the peer: fingerprints of the CA and certificate it holds
    for the FMC, and whether its key is the certificate's."""

    ca_sha256: str | None
    cert_sha256: str | None
    key_matches_cert: bool
    route: str
    checked_at_utc: datetime


class DeviceEvidence(_Model):
    """One peer of one FMC: its pushes and verifies, the files made for it, the restart, the verdict.
    `write_started_at_utc` None: sftrenew wrote nothing there (generate_certs.pl pushed the files over the
    live tunnel, or no push got that far)."""

    name: str
    push: str | None
    route: str | None
    verdict: str | None
    attempts: tuple[Attempt, ...]
    folder: str | None
    files: tuple[PeerFile, ...]
    write_started_at_utc: datetime | None
    restarted_at_utc: datetime | None
    held: HeldFacts | None
    rounds: tuple[RoundFacts, ...]


class RegenerationFacts(_Model):
    claimed_at_utc: datetime | None
    intent_at_utc: datetime | None
    done_at_utc: datetime | None


class FmcEvidence(_Model):
    """One FMC of the pair (each has its own InternalCA) and everything the renewal did with it. `notes` say
    what the record could not answer (a document that does not read back, a CA certificate not kept)."""

    name: str
    role: str
    state: str
    uuid: str | None
    ca_before: CaFacts | None
    ca_after: CaFacts | None
    regeneration: RegenerationFacts
    backup: tuple[StoredFile, ...]
    plan_at_enqueue: ValidationFacts | None
    validation_before: ValidationFacts | None
    validation_after: tuple[PeerAfter, ...]
    steps: tuple[Attempt, ...]
    devices: tuple[DeviceEvidence, ...]
    notes: tuple[str, ...]


class EventFacts(_Model):
    """Something a person did to the renewal (or the reconciler could not do), with who and when."""

    at_utc: datetime
    action: str
    who: str | None
    fmc: str | None
    device: str | None
    detail: str | None


class RenewalFacts(_Model):
    id: str
    pair: str
    state: str
    requested_by: str
    requested_at_utc: datetime
    finished_at_utc: datetime | None


class EvidencePack(_Model):
    """The whole pack's content: what `pipeline.evidence.seal` digests and signs."""

    generated_at_utc: datetime
    generator: str
    renewal: RenewalFacts
    fmcs: tuple[FmcEvidence, ...]
    events: tuple[EventFacts, ...]
