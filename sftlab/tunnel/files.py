"""What sftunnel reads and writes in a device's tree besides its certificates (device-facts 5.2, 7.3).

The peer record gives the owner's port and a stranger's identity; `ims.conf` the software each end reports
in its hello; the heartbeat file follows the heartbeats; pushed files land in the folder for the owner.
Every function here survives missing or broken files: a lab device may hold anything.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os

from sftlab.fleet.layout import DeviceTree, PeerRecord, write_file_atomic

__all__ = ["PUSH_FILES", "owner_port", "peer_record", "software", "store_push", "touch_heartbeat"]

PUSH_FILES = frozenset({"cacert.pem", "sftunnel-cert.pem", "sftunnel-key.pem"})


def peer_record(tree: DeviceTree, uuid: str) -> PeerRecord | None:
    """The device's `sftunnel.json` for `uuid`; None when absent or unreadable."""
    try:
        return tree.read_peer_record(uuid)
    except (OSError, ValueError):
        return None


def owner_port(tree: DeviceTree, owner_uuid: str) -> int | None:
    """The port a peer connects to for this owner (its peer record); None when it has no usable record."""
    record = peer_record(tree, owner_uuid)
    return record.sftunnel_port if record is not None else None


def software(tree: DeviceTree) -> dict[str, str]:
    """The `sw_version`/`sw_build` fields of a hello, from `ims.conf` (empty when unreadable)."""
    try:
        conf = tree.read_ims_conf()
    except (OSError, ValueError):
        conf = {}
    return {"sw_version": conf.get("SWVERSION", ""), "sw_build": conf.get("SWBUILD", "")}


def touch_heartbeat(tree: DeviceTree, owner_uuid: str) -> None:
    """The 1-byte `sftunnel-heartbeat` file whose mtime follows the heartbeats (device-facts 5.2, ASSUMED).

    Its mtime is set, and the file written only when it is missing: one system call per heartbeat of each
    of 600 tunnels, where a rewrite took three."""
    path = tree.host_path(tree.peer_dir(owner_uuid)) / "sftunnel-heartbeat"
    with contextlib.suppress(OSError, ValueError):
        try:
            os.utime(path)
        except FileNotFoundError:
            path.write_bytes(b"1")


def store_push(tree: DeviceTree, owner_uuid: str, files: object) -> bool:
    """Write pushed files into the folder for the owner, atomically and 0644; all or none are accepted."""
    if not isinstance(files, dict) or not files or not set(files) <= PUSH_FILES:
        return False
    try:
        decoded = {str(name): base64.b64decode(str(data), validate=True) for name, data in files.items()}
        folder = tree.host_path(tree.peer_dir(owner_uuid))
        for name, data in sorted(decoded.items()):
            write_file_atomic(folder / name, data, 0o644)
    except (OSError, ValueError, binascii.Error):
        return False
    return True
