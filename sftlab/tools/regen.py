"""What `generate_certs.pl` does on an FMC (device-facts 3 and the decisions of 12).

A run makes a new InternalCA (same subject, valid 3650 days from now, in the format the FMC's CA had: v3
with serial 1, or v1 with serial 0 and no extensions - the `ca_format` knob), a new sftunnel certificate
for the FMC and one for every peer folder, then pushes each peer its three files over its live tunnel. Peers
whose tunnel is down are listed in the output and in `/var/tmp/certs/<unix time>/FAILED_PUSH` (3.2, 3.3 byte
for byte). Live tunnels stay up: the FMC does not restart sftunnel, so the new files matter from the next
handshake on. Our choices (ASSUMED in 3.2): the run folder keeps a copy of the old `/etc/sf/ca_root` and
`/etc/sf/keys` files under `ca_root/` and `keys/`; the log gets a few timestamped lines; when every push
worked the output is a single blank line.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from sftlab.fleet import pki
from sftlab.fleet.keys import KeyPool
from sftlab.fleet.layout import DeviceTree, PeerRecord, append_line, write_file_atomic
from sftlab.fleet.spec import CaFormat
from sftlab.tunnel.hub import SftunnelHub, TunnelDevice

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# The order generate_certs.pl reports (and we push) a peer's files in (device-facts 3.2).
PUSH_ORDER = ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")
_BACKED_UP = ("/etc/sf/ca_root", "/etc/sf/keys")


@dataclass(frozen=True)
class RegenReport:
    """`stdout`: what the script prints after the second prompt; paths are device paths."""

    stdout: str
    failed_push_path: str | None
    run_dir: str


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


@dataclass(frozen=True)
class _NewCa:
    ca: pki.InternalCa
    ca_key: rsa.RSAPrivateKey
    fmc: _Issued
    peers: dict[str, _Issued]
    index_txt: bytes
    serial_file: bytes
    crl_pem: bytes


def gmt_date(when_utc: datetime) -> str:
    """`Oct 9 10:12:50 2034 GMT`: the day is not padded (device-facts 3.2)."""
    return f"{_MONTHS[when_utc.month - 1]} {when_utc.day} {when_utc:%H:%M:%S} {when_utc.year} GMT"


def ca_expiry_line(tree: DeviceTree, now_utc: datetime) -> str:
    """`Current ca_root expires in N days - at <date> GMT`; N = floor((notAfter - now) / 1 day), maybe < 0."""
    not_after = pki.read_ca_file(tree.host_path(tree.CA_CERT).read_bytes()).not_valid_after_utc
    days = math.floor((not_after - now_utc).total_seconds() / 86400)
    return f"Current ca_root expires in {days} days - at {gmt_date(not_after)}"


async def regenerate(hub: SftunnelHub, fmc: TunnelDevice, *, keys: KeyPool, now_utc: datetime) -> RegenReport:
    """Regenerate the FMC's CA and every sftunnel certificate, push to live peers, report the others."""
    tree = fmc.tree
    now = now_utc.replace(microsecond=0)
    run_dir = tree.certs_run_dir(int(now.timestamp()))
    log = _RegenLog(tree, now)
    log.line(f"Starting certificate generation for FMC {fmc.uuid}, run directory {run_dir}")
    peers = _peer_records(tree)
    fresh_keys = await asyncio.to_thread(keys.take, 2 + len(peers))
    new = await asyncio.to_thread(_issue, tree, fmc.uuid, peers, fresh_keys, now)
    await asyncio.to_thread(_backup, tree, run_dir)
    log.line(f"Backed up {' and '.join(_BACKED_UP)} to {run_dir}")
    await asyncio.to_thread(_install, tree, new)
    _log_issued(log, fmc, peers, new)
    ca_pem = new.ca.pem
    outcomes = await asyncio.gather(
        *(hub.push(fmc.name, peer.uuid, _peer_files(ca_pem, new.peers[peer.uuid])) for peer in peers)
    )
    failed = [peer for peer, pushed in zip(peers, outcomes, strict=True) if not pushed]
    for peer, pushed in zip(peers, outcomes, strict=True):
        log.line(f"{'Pushed' if pushed else 'Failed to push'} certificates to {peer.name} ({peer.ip})")
    failed_path = _write_failed_push(tree, run_dir, fmc.uuid, failed)
    log.line(f"Certificate generation finished: {len(peers) - len(failed)} pushed, {len(failed)} failed")
    return RegenReport(_stdout(fmc.uuid, failed, failed_path), failed_path, run_dir)


def _peer_records(tree: DeviceTree) -> list[PeerRecord]:
    """Every peer folder with a readable record, sorted by name as the script reports them."""
    records = []
    for uuid in tree.peer_uuids():
        try:
            records.append(tree.read_peer_record(uuid))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda record: record.name)


def _ca_format(tree: DeviceTree) -> CaFormat:
    """The format of the FMC's current CA, which the new one keeps; v3 when there is no readable CA."""
    try:
        return pki.read_ca_file(tree.host_path(tree.CA_CERT).read_bytes()).ca_format
    except (OSError, ValueError):
        return "v3"


def _next_serial(tree: DeviceTree) -> int:
    """The CA database's next serial; 2 when there is none (1 is the CA's own)."""
    try:
        return max(2, int(tree.host_path(tree.CA_SERIAL).read_text(encoding="ascii").strip(), 16))
    except (OSError, ValueError):
        return 2


def _issue(
    tree: DeviceTree,
    fmc_uuid: str,
    peers: Sequence[PeerRecord],
    keys: Sequence[rsa.RSAPrivateKey],
    now: datetime,
) -> _NewCa:
    """The new CA and everything it signs (CPU work: runs in a thread). Serials continue the CA database."""
    ca_key, fmc_key, *peer_keys = keys
    ca_cert = pki.make_internal_ca(ca_key, fmc_uuid=fmc_uuid, not_before_utc=now, ca_format=_ca_format(tree))
    serial = _next_serial(tree)

    def sign(owner_uuid: str, key: rsa.RSAPrivateKey, serial: int) -> _Issued:
        cert = pki.make_sftunnel_cert(
            ca_cert=ca_cert, ca_key=ca_key, key=key, owner_uuid=owner_uuid, serial=serial, not_before_utc=now
        )
        return _Issued(cert, key)

    fmc = sign(fmc_uuid, fmc_key, serial)
    issued = {
        p.uuid: sign(p.uuid, k, serial + 1 + i) for i, (p, k) in enumerate(zip(peers, peer_keys, strict=True))
    }
    new_lines, serial_file = pki.ca_database([fmc.cert, *(i.cert for i in issued.values())])
    try:
        old_index = tree.host_path(tree.CA_INDEX).read_bytes()
    except OSError:
        old_index = b""
    crl = pki.make_empty_crl(ca_cert=ca_cert, ca_key=ca_key, last_update_utc=now)
    return _NewCa(ca_cert, ca_key, fmc, issued, old_index + new_lines, serial_file, pki.crl_pem(crl))


def _backup(tree: DeviceTree, run_dir: str) -> None:
    """Copy the old CA root and key files into the run folder (`ca_root/...`, `keys/...`)."""
    target_root = _mkdirs(tree.host_path(run_dir))
    for device_dir in _BACKED_UP:
        source = tree.host_path(device_dir)
        if not source.is_dir():
            continue
        for path in sorted(source.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                target = target_root / source.name / path.relative_to(source)
                _mkdirs(target.parent)
                write_file_atomic(target, path.read_bytes(), 0o644)


def _install(tree: DeviceTree, new: _NewCa) -> None:
    """Write the new files atomically, mode 0644: the CA root, the FMC's pair, each peer's certs_pushed."""
    _mkdirs(tree.host_path("/etc/sf/ca_root/private"))
    _mkdirs(tree.host_path("/etc/sf/keys"))
    writes: list[tuple[str, bytes]] = [
        (tree.CA_KEY, pki.key_pem(new.ca_key)),
        (tree.CA_CERT, new.ca.pem),
        (tree.CA_INDEX, new.index_txt),
        (tree.CA_SERIAL, new.serial_file),
        ("/etc/sf/ca_root/crl.pem", new.crl_pem),
        (tree.SFTUNNEL_KEY, pki.key_pem(new.fmc.key)),
        (tree.SFTUNNEL_CERT, pki.cert_pem(new.fmc.cert)),
    ]
    for uuid, issued in new.peers.items():
        pushed = f"{tree.peer_dir(uuid)}/certs_pushed"
        _mkdirs(tree.host_path(pushed))
        writes += [
            (f"{pushed}/sftunnel-key.pem", pki.key_pem(issued.key)),
            (f"{pushed}/sftunnel-cert.pem", pki.cert_pem(issued.cert)),
        ]
    for device_path, data in writes:
        write_file_atomic(tree.host_path(device_path), data, 0o644)


def _peer_files(ca_pem: bytes, issued: _Issued) -> dict[str, bytes]:
    return {
        "cacert.pem": ca_pem,
        "sftunnel-key.pem": pki.key_pem(issued.key),
        "sftunnel-cert.pem": pki.cert_pem(issued.cert),
    }


def failed_push_lines(fmc_uuid: str, peer: PeerRecord) -> list[str]:
    """One peer's FAILED_PUSH lines (device-facts 3.3), the double slash after certs_pushed included."""
    sources = {
        "cacert.pem": DeviceTree.CA_CERT,
        "sftunnel-key.pem": f"{DeviceTree.peer_dir(peer.uuid)}/certs_pushed//sftunnel-key.pem",
        "sftunnel-cert.pem": f"{DeviceTree.peer_dir(peer.uuid)}/certs_pushed//sftunnel-cert.pem",
    }
    destination = DeviceTree.peer_dir(fmc_uuid)
    return [f"{peer.uuid} {peer.name} {peer.ip} {sources[name]} {destination}/{name}" for name in PUSH_ORDER]


def _write_failed_push(
    tree: DeviceTree, run_dir: str, fmc_uuid: str, failed: Sequence[PeerRecord]
) -> str | None:
    if not failed:
        return None
    path = f"{run_dir}/FAILED_PUSH"
    text = "".join(line + "\n" for peer in failed for line in failed_push_lines(fmc_uuid, peer))
    write_file_atomic(tree.host_path(path), text.encode("utf-8"), 0o644)
    return path


def _stdout(fmc_uuid: str, failed: Sequence[PeerRecord], failed_path: str | None) -> str:
    """A blank line; then, when something failed, the failure lines and the FAILED_PUSH pointer (3.2)."""
    if not failed or failed_path is None:
        return "\n"
    destination = DeviceTree.peer_dir(fmc_uuid)
    lines = [
        f"Failed to push to {peer.name} = {destination}/{name}" for peer in failed for name in PUSH_ORDER
    ]
    pointer = f"Some files were failed to be pushed to remote peers. For more details check {failed_path}"
    return "\n" + "".join(line + "\n" for line in lines) + "\n" + pointer + "\n\n"


def _log_issued(log: _RegenLog, fmc: TunnelDevice, peers: Sequence[PeerRecord], new: _NewCa) -> None:
    ca = new.ca
    validity = f"notBefore={gmt_date(ca.not_valid_before_utc)} notAfter={gmt_date(ca.not_valid_after_utc)}"
    log.line(f"Generated new ca_root {pki.oneline_dn(ca.subject)}: {validity}")
    log.line(f"Generated sftunnel certificate for {fmc.uuid} (serial {new.fmc.cert.serial_number})")
    for peer in peers:
        serial = new.peers[peer.uuid].cert.serial_number
        log.line(f"Generated sftunnel certificate for {peer.name} {peer.uuid} (serial {serial})")


def _mkdirs(path: Path) -> Path:
    """Create `path` and its missing parents with mode 0755 (as on the device, whatever the umask)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir()
        folder.chmod(0o755)
    return path


class _RegenLog:
    """`/var/log/sf/sfca_generation.log`: timestamped lines (the real content is unknown, 3.2)."""

    def __init__(self, tree: DeviceTree, now_utc: datetime) -> None:
        self._path = tree.host_path(tree.regen_log)
        self._stamp = f"{now_utc:%Y-%m-%d %H:%M:%S}"

    def line(self, text: str) -> None:
        append_line(self._path, f"{self._stamp} {text}")
