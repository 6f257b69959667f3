"""Where the files a renewal touches live on an FMC and an FTD (device-facts section 5), as device paths.

The short spellings are used on both kinds: on an FTD `/etc/sf` and `/var/sf` reach `/ngfw/...` (device-facts
1.1; the vendor's own procedure does `cd /var/sf/peers/<uuid>/` on the FTD).
"""

from __future__ import annotations

CA_ROOT = "/etc/sf/ca_root"
CA_CERT = "/etc/sf/ca_root/cacert.pem"
KEYS_DIR = "/etc/sf/keys"
SFTUNNEL_CERT = "/etc/sf/keys/sftunnel-cert.pem"
SFTUNNEL_KEY = "/etc/sf/keys/sftunnel-key.pem"
SFTUNNEL_CONF = "/etc/sf/sftunnel.conf"
IMS_CONF = "/etc/sf/ims.conf"
PEERS_DIR = "/var/sf/peers"
#: generate_certs.pl's run folders, one per run, named by its start time (device-facts 3.2).
CERTS_RUNS = "/var/tmp/certs"  # noqa: S108 - a path on the FMC, chosen by the vendor

#: The three files a peer holds for an FMC, in the order generate_certs.pl pushes them (device-facts 3.2).
PUSHED_FILES = ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")
PEER_CERT = "sftunnel-cert.pem"
PEER_KEY = "sftunnel-key.pem"
PEER_CA = "cacert.pem"


def peer_dir(uuid: str) -> str:
    """`/var/sf/peers/<uuid>`: on an FMC the folder of a peer it manages; on a peer, the folder of an FMC."""
    if not uuid or "/" in uuid or uuid in {".", ".."}:
        raise ValueError(f"{uuid!r} is not a peer UUID")
    return f"{PEERS_DIR}/{uuid}"


def certs_pushed(peer_uuid: str, name: str) -> str:
    """Where generate_certs.pl leaves a peer's new cert or key on the FMC."""
    return f"{peer_dir(peer_uuid)}/certs_pushed/{name}"


def is_key_path(path: str) -> bool:
    """Whether a device file holds a private key (such files are encrypted at rest and never shown)."""
    name = path.rsplit("/", 1)[-1]
    return name.endswith("key.pem") or "/private/" in path
