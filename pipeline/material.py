"""Certificate material moved by a renewal: device files with their digests, and what each peer must hold.

`data` never shows in a repr (it may be a private key); callers that store it encrypt what `secret` marks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pipeline.devicepaths import PEER_CA, PEER_CERT, PEER_KEY, is_key_path


@dataclass(frozen=True)
class DeviceFile:
    """One file as read from a device."""

    path: str
    data: bytes = field(repr=False)
    sha256: str
    secret: bool

    @classmethod
    def of(cls, path: str, data: bytes) -> DeviceFile:
        return cls(path, data, hashlib.sha256(data).hexdigest(), is_key_path(path))


@dataclass(frozen=True)
class PeerMaterial:
    """The three files one peer must hold for one FMC after a regeneration (device-facts 3.3)."""

    peer_uuid: str
    ca_pem: bytes = field(repr=False)
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    #: SHA-256 of the CA and certificate DER (certificate fingerprints), for deciding whether to push.
    ca_sha256: str
    cert_sha256: str

    def files(self) -> dict[str, bytes]:
        """File name in the peer's folder for the FMC -> content, in generate_certs.pl's push order."""
        return {
            "cacert.pem": self.ca_pem,
            "sftunnel-key.pem": self.key_pem,
            "sftunnel-cert.pem": self.cert_pem,
        }


@dataclass(frozen=True)
class FilesBefore:
    """What a peer held for one FMC before this renewal first wrote its files, as the record keeps it: the
    folder, the suffix of the copies the push kept there (`<file><suffix>`), and each file's SHA-256 (of its
    bytes; None: the file was not there, so no copy was kept). Digests only, never the bytes: the key's
    content stays on the device."""

    folder: str
    suffix: str
    ca_sha256: str | None
    cert_sha256: str | None
    key_sha256: str | None

    @classmethod
    def of(cls, folder: str, suffix: str, files: dict[str, bytes]) -> FilesBefore:
        """From the files as read (name in the folder -> bytes; a missing file is absent)."""
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        return cls(
            folder,
            suffix,
            digests.get(PEER_CA),
            digests.get(PEER_CERT),
            digests.get(PEER_KEY),
        )

    def by_name(self) -> dict[str, str | None]:
        """File name in the folder -> its SHA-256 before the renewal, in generate_certs.pl's push order."""
        return {PEER_CA: self.ca_sha256, PEER_KEY: self.key_sha256, PEER_CERT: self.cert_sha256}

    def backup_of(self, name: str) -> str:
        """The device path of the copy the push kept of `name`."""
        return f"{self.folder}/{name}{self.suffix}"
