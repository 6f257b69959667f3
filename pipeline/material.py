"""Certificate material moved by a renewal: device files with their digests, and what each peer must hold.

`data` never shows in a repr (it may be a private key); callers that store it encrypt what `secret` marks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pipeline.devicepaths import is_key_path


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
