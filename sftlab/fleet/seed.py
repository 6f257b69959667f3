"""Write the whole simulated fleet's file trees at lab start (device-facts 5, 6, 8 and 12).

Every FMC gets its own InternalCA and issues an sftunnel certificate to itself and to each peer it manages
(every FTD, and the other FMC of an HA pair). Each peer holds, in `/var/sf/peers/<FMC UUID>/`, that FMC's CA
and the certificate/key the FMC issued to it; the FMC keeps the same pair in its `certs_pushed/` folder.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from sftlab.fleet import pki
from sftlab.fleet.keys import KeyPool
from sftlab.fleet.layout import (
    FTD_NGFW_LINKS,
    DeviceKind,
    DeviceTree,
    PeerRecord,
    format_ims_conf,
    format_sftunnel_conf,
)
from sftlab.fleet.spec import CaFormat

# Peer certificates were issued at registration, within the last year (or with the CA if it is younger),
# so they outlive an expiring CA as real 3650-day device certificates do.
_REGISTERED_WITHIN = timedelta(days=365)
_WRITER_THREADS = 4
# device-facts 5.2: root:root, files 0644 (the keys included), folders 0755.
_FILE_MODE = 0o644
_DIR_MODE = 0o755
# Folders every device has, whatever its kind (device paths).
_COMMON_DIRS = (
    "/home/admin",
    "/Volume/home/admin",
    "/root",
    "/var/tmp/certs",  # noqa: S108 - a device path, inside the lab folder
    "/var/log/sf",
    DeviceTree.PEERS_DIR,
    "/etc/sf/keys",
)


@dataclass(frozen=True)
class Identity:
    """Who a simulated device is: what its ims.conf, banner and peers say about it."""

    name: str
    hostname: str
    uuid: str
    ip: str
    kind: DeviceKind
    sw_version: str
    sw_build: str
    model: str

    def peer_record(self, sftunnel_port: int | None = None) -> PeerRecord:
        return PeerRecord(
            uuid=self.uuid,
            name=self.name,
            ip=self.ip,
            kind=self.kind,
            sftunnel_port=sftunnel_port,
            sw_version=self.sw_version,
            sw_build=self.sw_build,
        )

    def ims_conf(self) -> bytes:
        entries = {
            "APPLIANCE_UUID": self.uuid,
            "HOSTNAME": self.hostname,
            "MODEL": self.model,
            "SWBUILD": self.sw_build,
            "SWVERSION": self.sw_version,
        }
        return format_ims_conf(entries).encode("utf-8")


@dataclass(frozen=True)
class FmcPlan:
    """An FMC and its CA's age: `ca_days_left` is notAfter - now in days (negative = expired).

    `ca_format`: `v3` (the lab default) or `v1` (serial 0, no extensions: what real FMCs probably hold).
    """

    identity: Identity
    ca_days_left: int
    sftunnel_port: int
    ca_format: CaFormat = "v3"


@dataclass(frozen=True)
class FleetFiles:
    """The fleet to seed: one or two FMCs (the first is the primary), the FTDs, and each device's folder."""

    fmcs: tuple[FmcPlan, ...]
    ftds: tuple[Identity, ...]
    roots: Mapping[str, Path]

    def peers_of(self, fmc: FmcPlan) -> list[Identity]:
        """Who `fmc` manages: every FTD, then the other FMC of the pair."""
        others = [other.identity for other in self.fmcs if other is not fmc]
        return [*self.ftds, *others]

    def record_of(self, identity: Identity) -> PeerRecord:
        port = next((f.sftunnel_port for f in self.fmcs if f.identity == identity), None)
        return identity.peer_record(port)


@dataclass(frozen=True)
class _Issued:
    """A certificate and its key, as the PEM bytes written to disk."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class _CaBundle:
    """Everything one FMC's CA produced: the CA itself, its database, and every certificate it issued."""

    fmc: FmcPlan
    ca: _Issued
    crl_pem: bytes
    own: _Issued
    peers: Mapping[str, _Issued]
    index_txt: bytes
    serial_file: bytes


def seed_fleet(plan: FleetFiles, *, keys: KeyPool, now_utc: datetime) -> None:
    """Write every device's tree into its (missing or empty) folder, as the fleet stands at `now_utc`.

    Raises ValueError for an inconsistent plan or a device folder that already has content.
    """
    _check_plan(plan)
    now = now_utc.replace(microsecond=0)
    needed = sum(2 + len(plan.peers_of(fmc)) for fmc in plan.fmcs)
    key_stream = iter(keys.take(needed))
    bundles = [_issue(fmc, plan.peers_of(fmc), key_stream, now) for fmc in plan.fmcs]
    identities = [fmc.identity for fmc in plan.fmcs] + list(plan.ftds)
    # Creating thousands of small files is file-system bound; the writes release the GIL, and each device's
    # tree is written by one thread only.
    with ThreadPoolExecutor(max_workers=_WRITER_THREADS) as pool:
        for _ in pool.map(lambda identity: _write_device(plan, bundles, identity), identities):
            pass


def _write_device(plan: FleetFiles, bundles: Sequence[_CaBundle], identity: Identity) -> None:
    tree = DeviceTree(plan.roots[identity.name], identity.kind)
    writer = _TreeWriter(tree.root)
    _write_base(writer, tree, identity)
    me = plan.record_of(identity)
    for bundle in bundles:
        if bundle.fmc.identity == identity:
            peers = [plan.record_of(peer) for peer in plan.peers_of(bundle.fmc)]
            _write_fmc(writer, tree, bundle, peers)
        else:  # an FMC manages every other device of the fleet
            _write_owner_folder(writer, tree, bundle, me)


def _check_plan(plan: FleetFiles) -> None:
    if not 1 <= len(plan.fmcs) <= 2:
        raise ValueError(f"a lab fleet has one or two FMCs, not {len(plan.fmcs)}")
    identities = [fmc.identity for fmc in plan.fmcs] + list(plan.ftds)
    for identity, kind in [(f.identity, "fmc") for f in plan.fmcs] + [(t, "ftd") for t in plan.ftds]:
        if identity.kind != kind:
            raise ValueError(
                f"device {identity.name!r} is listed as {kind} but its identity says {identity.kind}"
            )
    for label, values in (("name", [i.name for i in identities]), ("uuid", [i.uuid for i in identities])):
        duplicates = sorted(value for value, count in Counter(values).items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate device {label}: {', '.join(duplicates)}")
    missing = [i.name for i in identities if i.name not in plan.roots]
    if missing:
        raise ValueError(f"no folder given for: {', '.join(missing)}")
    for identity in identities:
        root = plan.roots[identity.name]
        if root.exists() and any(root.iterdir()):
            raise ValueError(f"the folder of {identity.name!r} is not empty: {root}")


def _issue(
    fmc: FmcPlan, peers: Sequence[Identity], keys: Iterator[rsa.RSAPrivateKey], now: datetime
) -> _CaBundle:
    """One FMC's CA and what it issues: serial 2 to the FMC itself, then 3, 4, ... to its peers."""
    ca_key = next(keys)
    ca_not_before = now - timedelta(days=pki.CA_DAYS - fmc.ca_days_left)
    ca_cert = pki.make_internal_ca(
        ca_key, fmc_uuid=fmc.identity.uuid, not_before_utc=ca_not_before, ca_format=fmc.ca_format
    )
    issued_at = max(ca_not_before, now - _REGISTERED_WITHIN)
    certs = []
    for serial, owner in enumerate([fmc.identity, *peers], start=2):
        key = next(keys)
        cert = pki.make_sftunnel_cert(
            ca_cert=ca_cert,
            ca_key=ca_key,
            key=key,
            owner_uuid=owner.uuid,
            serial=serial,
            not_before_utc=issued_at,
        )
        certs.append((owner.uuid, cert, _Issued(pki.cert_pem(cert), pki.key_pem(key))))
    index_txt, serial_file = pki.ca_database([cert for _, cert, _ in certs])
    crl = pki.make_empty_crl(ca_cert=ca_cert, ca_key=ca_key, last_update_utc=now)
    return _CaBundle(
        fmc=fmc,
        ca=_Issued(ca_cert.pem, pki.key_pem(ca_key)),
        crl_pem=pki.crl_pem(crl),
        own=certs[0][2],
        peers={uuid: issued for uuid, _, issued in certs[1:]},
        index_txt=index_txt,
        serial_file=serial_file,
    )


def _write_base(writer: _TreeWriter, tree: DeviceTree, identity: Identity) -> None:
    """Folders, FTD symlinks, ims.conf and an empty messages log: what every device has."""
    if tree.kind == "ftd":
        for device_path in FTD_NGFW_LINKS:
            link = tree.host_path(device_path)
            target = tree.host_path("/ngfw" + device_path)
            writer.mkdir(target)
            writer.mkdir(link.parent)
            os.symlink(os.path.relpath(target, link.parent), link)
    for device_path in (*_COMMON_DIRS, tree.bin_dir):
        writer.mkdir(tree.host_path(device_path))
    writer.put(tree.host_path(tree.IMS_CONF), identity.ims_conf())
    writer.put(tree.host_path(tree.messages_log), b"")


def _write_fmc(writer: _TreeWriter, tree: DeviceTree, bundle: _CaBundle, peers: Sequence[PeerRecord]) -> None:
    """The FMC's CA root, its own sftunnel pair, sftunnel.conf, and a folder per peer it manages."""
    writer.mkdir(tree.host_path("/etc/sf/ca_root/private"))
    writer.put(tree.host_path(tree.CA_CERT), bundle.ca.cert_pem)
    writer.put(tree.host_path(tree.CA_KEY), bundle.ca.key_pem)
    writer.put(tree.host_path(tree.CA_INDEX), bundle.index_txt)
    writer.put(tree.host_path(tree.CA_SERIAL), bundle.serial_file)
    writer.put(tree.host_path("/etc/sf/ca_root/crl.pem"), bundle.crl_pem)
    writer.put(tree.host_path(tree.SFTUNNEL_CERT), bundle.own.cert_pem)
    writer.put(tree.host_path(tree.SFTUNNEL_KEY), bundle.own.key_pem)
    writer.put(tree.host_path(tree.SFTUNNEL_CONF), format_sftunnel_conf(peers).encode("utf-8"))
    for record in peers:
        pushed = tree.host_path(f"{tree.peer_dir(record.uuid)}/certs_pushed")
        writer.mkdir(pushed)
        writer.put(pushed.parent / "sftunnel.json", record.to_json().encode("utf-8"))
        writer.put(pushed / "sftunnel-cert.pem", bundle.peers[record.uuid].cert_pem)
        writer.put(pushed / "sftunnel-key.pem", bundle.peers[record.uuid].key_pem)


def _write_owner_folder(writer: _TreeWriter, tree: DeviceTree, bundle: _CaBundle, me: PeerRecord) -> None:
    """On a managed device: the managing FMC's folder, with its CA and the pair it issued to this device."""
    owner = bundle.fmc.identity
    folder = tree.host_path(tree.peer_dir(owner.uuid))
    writer.mkdir(folder)
    issued = bundle.peers[me.uuid]
    writer.put(folder / "cacert.pem", bundle.ca.cert_pem)
    writer.put(folder / "sftunnel-cert.pem", issued.cert_pem)
    writer.put(folder / "sftunnel-key.pem", issued.key_pem)
    writer.put(
        folder / "sftunnel.json", owner.peer_record(bundle.fmc.sftunnel_port).to_json().encode("utf-8")
    )
    writer.put(folder / "sw_version", owner.sw_version.encode("utf-8"))
    writer.put(folder / "peer_flags.json", _peer_flags(owner_uuid=owner.uuid, ha_peer=me.kind == "fmc"))
    writer.put(folder / "ims.conf", owner.ims_conf())
    writer.put(folder / "sftunnel-heartbeat", b"1")  # 1 byte, as on a device (device-facts 5.2)


def _peer_flags(*, owner_uuid: str, ha_peer: bool) -> bytes:
    """peer_flags.json: the real content is unknown (device-facts 5.2); a plausible small object."""
    return json.dumps({"peer_uuid": owner_uuid, "ha_peer": ha_peer, "registered": True}).encode("utf-8")


class _TreeWriter:
    """Fast writes into one fresh device tree: plain creates (no temp file, no fsync: nothing reads a tree
    being seeded, and a crash means seeding again), with explicit modes so the umask cannot change them."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, _DIR_MODE)
        self._made: set[Path] = {root}

    def mkdir(self, path: Path) -> None:
        """Create `path` and its missing parents inside the root (through symlinks, as the kernel does)."""
        if path in self._made:
            return
        if not path.is_dir():
            self.mkdir(path.parent)
            os.mkdir(path)
            os.chmod(path, _DIR_MODE)
        self._made.add(path)

    def put(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, _FILE_MODE)
        finally:
            os.close(fd)
