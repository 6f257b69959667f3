"""Artifacts: the files a renewal copied off devices or made, kept so a retry works from stored material.

Secret artifacts (private keys) are sealed with AES-GCM before the row is written (`pipeline.store.crypto`),
bound to their row's renewal, FMC, device, kind and path; everything else (certificates, configuration,
FAILED_PUSH) is stored plain, and key material offered as plain is refused. Adding the same content for the
same place twice (a task redone) returns the row already there.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime

from pydantic import SecretStr
from sqlalchemy import bindparam
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from pipeline.devicepaths import is_key_path
from pipeline.material import DeviceFile
from pipeline.store.crypto import artifact_key, seal, unseal
from pipeline.store.fmcs import renewal_fmc
from pipeline.store.tables import Artifact, require_utc
from pipeline.store.transactions import committed, moved

#: What marks PEM key material of any kind (RSA, EC, PKCS#8, encrypted PKCS#8, OpenSSH).
_KEY_MARKER = b"PRIVATE KEY"


def _context(renewal_id: str, fmc: str, device: str | None, kind: str, path: str) -> bytes:
    return "\0".join((renewal_id, fmc, device or "", kind, path)).encode()


def _existing(session: Session, probe: Artifact) -> Artifact | None:
    device = col(Artifact.device)
    device_is = device.is_(None) if probe.device is None else device == probe.device
    query = select(Artifact).where(
        col(Artifact.renewal_id) == probe.renewal_id,
        col(Artifact.fmc) == probe.fmc,
        device_is,
        col(Artifact.kind) == probe.kind,
        col(Artifact.path) == probe.path,
        col(Artifact.sha256) == probe.sha256,
    )
    return session.exec(query).first()


def add_artifact(  # noqa: PLR0913 - keyword-only, one per column the caller knows; no bundle to build
    *,
    session: Session,
    renewal_id: str,
    fmc: str,
    device: str | None,
    kind: str,
    path: str,
    data: bytes,
    secret: bool,
    key: SecretStr | None,
    now: datetime,
) -> Artifact:
    """Keep `data` (from `path` on `device`; None: the FMC itself). `secret` data is sealed with `key`
    (settings.artifact_key): without one it is a ConfigError naming SFTRENEW_ARTIFACT_KEY. A private key
    offered as not secret is a ValueError: it would land in the database in the clear."""
    if not secret and (is_key_path(path) or _KEY_MARKER in data):
        raise ValueError(f"{path}: holds a private key; store it with secret=True (it is sealed at rest)")
    if not kind:
        raise ValueError("an artifact needs a kind (backup, new_ca, peer_material, failed_push, ...)")
    raw_key = artifact_key(key) if secret else None
    renewal_fmc(session=session, renewal_id=renewal_id, fmc=fmc)
    probe = Artifact(
        renewal_id=renewal_id,
        fmc=fmc,
        device=device,
        kind=kind,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        secret=secret,
        data=b"",
        created_at_utc=require_utc(now),
    )
    found = _existing(session, probe)
    if found is not None:
        return found
    context = _context(renewal_id, fmc, device, kind, path)
    probe.data = data if raw_key is None else seal(raw_key, data, context)
    with committed(session):
        session.add(probe)
        moved(session, renewal_id, now)
    session.refresh(probe)
    return probe


def add_device_file(  # noqa: PLR0913 - add_artifact's keywords, with the file in place of its parts
    *,
    session: Session,
    renewal_id: str,
    fmc: str,
    device: str | None,
    kind: str,
    file: DeviceFile,
    key: SecretStr | None,
    now: datetime,
) -> Artifact:
    """`add_artifact` for a file read off a device; whether it is secret comes with the file."""
    return add_artifact(
        session=session,
        renewal_id=renewal_id,
        fmc=fmc,
        device=device,
        kind=kind,
        path=file.path,
        data=file.data,
        secret=file.secret,
        key=key,
        now=now,
    )


def artifact_data(artifact: Artifact, *, key: SecretStr | None) -> bytes:
    """The content of an artifact, opened when it is sealed. A wrong or missing key, or a sealed blob that
    does not belong to this row, is a ConfigError that shows nothing of the content."""
    what = f"artifact {artifact.id} ({artifact.kind} {artifact.path})"
    if artifact.secret:
        context = _context(artifact.renewal_id, artifact.fmc, artifact.device, artifact.kind, artifact.path)
        data = unseal(artifact_key(key), artifact.data, context, what=what)
    else:
        data = artifact.data
    if hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise ValueError(f"{what} is damaged: its content no longer has the SHA-256 recorded with it")
    return data


def artifacts_of(
    *,
    session: Session,
    renewal_id: str,
    fmc: str | None = None,
    kind: str | None = None,
    device: str | None = None,
) -> list[Artifact]:
    """A renewal's artifacts in the order they were kept, narrowed by FMC, kind and device when given."""
    given = {"renewal_id": renewal_id, "fmc": fmc, "kind": kind, "device": device}
    params = {name: value for name, value in given.items() if value is not None}
    query = _artifacts_query(fmc is not None, kind is not None, device is not None)
    return list(session.exec(query, params=params).all())


@functools.cache
def _artifacts_query(by_fmc: bool, by_kind: bool, by_device: bool) -> SelectOfScalar[Artifact]:
    """The query for one choice of filters, built once: a push reads artifacts three times, and building the
    statement (and its cache key) cost more of the worker's CPU than running it."""
    query = select(Artifact).where(col(Artifact.renewal_id) == bindparam("renewal_id"))
    for name, wanted in (("fmc", by_fmc), ("kind", by_kind), ("device", by_device)):
        if wanted:
            query = query.where(col(getattr(Artifact, name)) == bindparam(name))
    return query.order_by(col(Artifact.id))
