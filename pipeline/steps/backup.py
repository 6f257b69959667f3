"""Step 1, backup: everything the regeneration will replace on an FMC, copied off the box first.

The vendor's procedure starts with a backup (device-facts 3.1); ours is the exact set of files
`generate_certs.pl` rewrites: the CA root, the FMC's own keys, `sftunnel.conf`, and every peer folder's
sftunnel files (including `certs_pushed/`). Each file comes back with the SHA-256 the FMC computed, and the
CA's fingerprint and notAfter are recorded so that the regeneration can prove it started from this CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.certs import CertFacts
from pipeline.devicepaths import CA_CERT, CA_ROOT, IMS_CONF, KEYS_DIR, PEERS_DIR, SFTUNNEL_CONF
from pipeline.devices.files import read_tree
from pipeline.devices.session import DeviceSession
from pipeline.errors import CommandFailedError
from pipeline.material import DeviceFile
from pipeline.parsing import parse_ims_conf

PEER_FILE_NAMES = ("sftunnel-*.pem", "cacert.pem", "sftunnel.json")


@dataclass(frozen=True)
class BackupOutcome:
    """The artifact bundle of one FMC, and the CA it holds."""

    fmc: str
    fmc_uuid: str
    files: tuple[DeviceFile, ...]
    ca_sha256: str
    ca_not_after_utc: datetime

    def file(self, path: str) -> DeviceFile:
        for item in self.files:
            if item.path == path:
                return item
        raise KeyError(path)


def backup(session: DeviceSession) -> BackupOutcome:
    """Read the bundle off the FMC; raise CommandFailedError when it holds no InternalCA at all."""
    files = read_tree(session, (CA_ROOT, KEYS_DIR, SFTUNNEL_CONF, IMS_CONF))
    files.update(read_tree(session, (PEERS_DIR,), names=PEER_FILE_NAMES))
    if CA_CERT not in files:
        raise CommandFailedError(
            session.device,
            str(session.route),
            f"test -f {CA_CERT}",
            1,
            f"{CA_CERT} is missing: is this an FMC?",
        )
    ca = CertFacts.from_pem(files[CA_CERT])
    uuid = parse_ims_conf(files[IMS_CONF].decode()).get("APPLIANCE_UUID", "") if IMS_CONF in files else ""
    return BackupOutcome(
        fmc=session.device,
        fmc_uuid=uuid.lower(),
        files=tuple(DeviceFile.of(path, data) for path, data in sorted(files.items())),
        ca_sha256=ca.sha256,
        ca_not_after_utc=ca.not_after_utc,
    )
