"""Device folders: path mapping, the FTD symlinks, and the files a seeded FMC pair + FTDs hold."""

from __future__ import annotations

import os
import re
import stat
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from sftlab.fleet.keys import KeyPool
from sftlab.fleet.layout import (
    PROXYSSL_BLOCK,
    DeviceTree,
    PeerRecord,
    append_line,
    parse_ims_conf,
    write_file_atomic,
)
from sftlab.fleet.seed import FleetFiles, FmcPlan, Identity, seed_fleet

NOW = datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=UTC)
FMC_MODEL = "Secure Firewall Management Center for VMware (66)"
FTD_MODEL = "Cisco Firepower Threat Defense for VMware (75)"


@dataclass(frozen=True)
class Seeded:
    plan: FleetFiles

    def tree(self, identity: Identity) -> DeviceTree:
        return DeviceTree(self.plan.roots[identity.name], identity.kind)

    @property
    def primary(self) -> FmcPlan:
        return self.plan.fmcs[0]

    @property
    def secondary(self) -> FmcPlan:
        return self.plan.fmcs[1]


@pytest.fixture(scope="session")
def tmp_key_pool(tmp_path_factory: pytest.TempPathFactory) -> KeyPool:
    return KeyPool(tmp_path_factory.mktemp("layout-keys"))


def _identity(name: str, number: int, kind: str) -> Identity:
    if kind == "fmc":
        return Identity(
            name, f"{name}-host", str(uuid.uuid1()), f"127.0.9.{number}", "fmc", "7.2.9", "67", FMC_MODEL
        )
    return Identity(
        name, f"{name}-host", str(uuid.uuid1()), f"127.0.9.{number}", "ftd", "7.2.5", "208", FTD_MODEL
    )


def _plan(base: Path, *, ftds: int = 3) -> FleetFiles:
    fmcs = (
        FmcPlan(_identity("fmc-a", 1, "fmc"), ca_days_left=200, sftunnel_port=40001),
        FmcPlan(_identity("fmc-b", 2, "fmc"), ca_days_left=-30, sftunnel_port=40002),
    )
    devices = tuple(_identity(f"ftd-{n}", 10 + n, "ftd") for n in range(ftds))
    names = [f.identity.name for f in fmcs] + [d.name for d in devices]
    return FleetFiles(fmcs=fmcs, ftds=devices, roots={name: base / name for name in names})


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, tmp_key_pool: KeyPool) -> Seeded:
    plan = _plan(tmp_path_factory.mktemp("fleet"))
    seed_fleet(plan, keys=tmp_key_pool, now_utc=NOW)
    return Seeded(plan)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _title(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.TITLE)[0].value)


def test_ftd_paths_reach_the_same_file_through_a_relative_symlink(seeded: Seeded) -> None:
    tree = seeded.tree(seeded.plan.ftds[0])
    plain, prefixed = tree.host_path("/etc/sf/ims.conf"), tree.host_path("/ngfw/etc/sf/ims.conf")

    assert plain != prefixed
    assert plain.samefile(prefixed)
    for device_path in ("/etc/sf", "/var/sf", "/var/log", "/usr/local/sf/bin"):
        link = tree.host_path(device_path)
        assert link.is_symlink()
        assert not os.path.isabs(os.readlink(link))
        assert link.resolve() == tree.host_path("/ngfw" + device_path).resolve()
    assert tree.host_path(tree.messages_log).samefile(tree.host_path("/var/log/messages"))
    assert not tree.host_path("/var/tmp").is_symlink()


def test_host_path_maps_prefixes_and_refuses_everything_else(tmp_path: Path) -> None:
    tree = DeviceTree(tmp_path, "fmc")

    assert tree.host_path("/etc/sf/ca_root/cacert.pem") == tmp_path / "etc/sf/ca_root/cacert.pem"
    assert tree.host_path("/Volume/home/admin/") == tmp_path / "Volume/home/admin"
    assert tree.host_path("/var/sf/peers/x/../y") == tmp_path / "var/sf/peers/y"
    for outside in ("/etc/passwd", "/etc/sfx/a", "/var", "/", "/var/sf/../../etc/shadow", "etc/sf/ims.conf"):
        with pytest.raises(ValueError, match=re.escape(repr(outside))):
            tree.host_path(outside)


def test_device_path_inverts_host_path(tmp_path: Path) -> None:
    tree = DeviceTree(tmp_path, "ftd")
    for device_path in ("/ngfw/var/log/messages", "/etc/sf/ims.conf", "/root", "/var/tmp/certs/17"):
        assert tree.device_path(tree.host_path(device_path)) == device_path
    with pytest.raises(ValueError, match="not inside"):
        tree.device_path(Path("/etc/sf/ims.conf"))
    with pytest.raises(ValueError, match="not under a mapped"):
        tree.device_path(tmp_path / "opt" / "x")


def test_kind_specific_paths() -> None:
    fmc, ftd = DeviceTree(Path("/x"), "fmc"), DeviceTree(Path("/y"), "ftd")
    assert (fmc.messages_log, fmc.bin_dir, fmc.home) == (
        "/var/log/messages",
        "/usr/local/sf/bin",
        "/Volume/home/admin",
    )
    assert (ftd.messages_log, ftd.bin_dir, ftd.home) == (
        "/ngfw/var/log/messages",
        "/ngfw/usr/local/sf/bin",
        "/home/admin",
    )
    assert DeviceTree.peer_dir("abc") == "/var/sf/peers/abc"
    assert DeviceTree.certs_run_dir(1728915794) == "/var/tmp/certs/1728915794"
    with pytest.raises(ValueError, match="usable peer UUID"):
        DeviceTree.peer_dir("../etc")


def test_every_seeded_file_is_0644_and_every_folder_0755(seeded: Seeded) -> None:
    counted = 0
    for root in seeded.plan.roots.values():
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                mode = os.lstat(Path(folder) / name).st_mode
                if stat.S_ISLNK(mode):
                    continue
                expected = 0o755 if stat.S_ISDIR(mode) else 0o644
                assert stat.S_IMODE(mode) == expected, Path(folder) / name
                counted += 1
        assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert counted > 100


def test_each_device_holds_ims_conf_logs_and_folders(seeded: Seeded) -> None:
    for identity in [f.identity for f in seeded.plan.fmcs] + list(seeded.plan.ftds):
        tree = seeded.tree(identity)
        assert tree.read_ims_conf() == {
            "APPLIANCE_UUID": identity.uuid,
            "SWVERSION": identity.sw_version,
            "SWBUILD": identity.sw_build,
            "MODEL": identity.model,
            "HOSTNAME": identity.hostname,
        }
        assert tree.host_path(tree.messages_log).read_bytes() == b""
        for folder in ("/var/tmp/certs", "/var/log/sf", tree.home, tree.bin_dir, "/root"):
            assert tree.host_path(folder).is_dir(), folder


def test_ftd_certs_are_issued_by_each_fmcs_own_ca_and_match_their_keys(seeded: Seeded) -> None:
    for ftd in seeded.plan.ftds:
        tree = seeded.tree(ftd)
        assert tree.peer_uuids() == sorted(f.identity.uuid for f in seeded.plan.fmcs)
        for fmc in seeded.plan.fmcs:
            folder = tree.host_path(tree.peer_dir(fmc.identity.uuid))
            ca, cert = _cert(folder / "cacert.pem"), _cert(folder / "sftunnel-cert.pem")
            key = serialization.load_pem_private_key((folder / "sftunnel-key.pem").read_bytes(), None)
            fmc_ca = _cert(seeded.tree(fmc.identity).host_path(DeviceTree.CA_CERT))

            assert ca == fmc_ca
            cert.verify_directly_issued_by(fmc_ca)
            assert cert.public_key() == key.public_key()
            assert _title(cert) == ftd.uuid
            assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == fmc.identity.uuid


def test_certs_pushed_on_the_fmc_equal_the_files_on_the_peer(seeded: Seeded) -> None:
    for fmc in seeded.plan.fmcs:
        fmc_tree = seeded.tree(fmc.identity)
        peers = [*seeded.plan.ftds, *(f.identity for f in seeded.plan.fmcs if f is not fmc)]
        assert fmc_tree.peer_uuids() == sorted(p.uuid for p in peers)
        for peer in peers:
            pushed = fmc_tree.host_path(fmc_tree.peer_dir(peer.uuid)) / "certs_pushed"
            held = seeded.tree(peer).host_path(DeviceTree.peer_dir(fmc.identity.uuid))
            for name in ("sftunnel-cert.pem", "sftunnel-key.pem"):
                assert (pushed / name).read_bytes() == (held / name).read_bytes()
            assert fmc_tree.read_peer_record(peer.uuid).uuid == peer.uuid


def test_fmc_pair_hold_each_others_folders_and_own_certs(seeded: Seeded) -> None:
    primary, secondary = seeded.primary, seeded.secondary
    on_primary = seeded.tree(primary.identity)
    record = on_primary.read_peer_record(secondary.identity.uuid)

    assert record == secondary.identity.peer_record(secondary.sftunnel_port)
    assert record.sftunnel_port == 40002
    folder = on_primary.host_path(on_primary.peer_dir(secondary.identity.uuid))
    assert (folder / "sw_version").read_bytes() == b"7.2.9"
    assert (folder / "sftunnel-heartbeat").read_bytes() == b"1"
    assert parse_ims_conf((folder / "ims.conf").read_text())["APPLIANCE_UUID"] == secondary.identity.uuid
    _cert(folder / "sftunnel-cert.pem").verify_directly_issued_by(_cert(folder / "cacert.pem"))
    own = _cert(on_primary.host_path(DeviceTree.SFTUNNEL_CERT))
    own_key = serialization.load_pem_private_key(
        on_primary.host_path(DeviceTree.SFTUNNEL_KEY).read_bytes(), None
    )
    own.verify_directly_issued_by(_cert(on_primary.host_path(DeviceTree.CA_CERT)))
    assert _title(own) == primary.identity.uuid
    assert own.public_key() == own_key.public_key()
    ftd_tree = seeded.tree(seeded.plan.ftds[0])
    assert ftd_tree.read_peer_record(primary.identity.uuid).sftunnel_port == 40001


def test_ca_lifetimes_follow_days_left_and_peer_certs_outlive_an_expired_ca(seeded: Seeded) -> None:
    now = NOW.replace(microsecond=0)
    primary_ca = _cert(seeded.tree(seeded.primary.identity).host_path(DeviceTree.CA_CERT))
    expired_ca = _cert(seeded.tree(seeded.secondary.identity).host_path(DeviceTree.CA_CERT))

    assert primary_ca.not_valid_after_utc == now + timedelta(days=200)
    assert expired_ca.not_valid_after_utc == now - timedelta(days=30)
    assert expired_ca.not_valid_before_utc == now - timedelta(days=3680)
    ftd = seeded.plan.ftds[0]
    held = seeded.tree(ftd).host_path(DeviceTree.peer_dir(seeded.secondary.identity.uuid))
    assert _cert(held / "sftunnel-cert.pem").not_valid_after_utc > now


def test_ca_database_lists_every_issued_cert_in_serial_order(seeded: Seeded) -> None:
    tree = seeded.tree(seeded.primary.identity)
    lines = tree.host_path(DeviceTree.CA_INDEX).read_text().splitlines()
    serials = [int(line.split("\t")[3], 16) for line in lines]

    assert serials == list(range(2, 2 + 1 + len(seeded.plan.ftds) + 1))
    assert tree.host_path(DeviceTree.CA_SERIAL).read_text() == f"{serials[-1] + 1:02X}\n"
    assert all(line.startswith("V\t") for line in lines)
    pushed = tree.host_path(tree.peer_dir(seeded.plan.ftds[0].uuid)) / "certs_pushed" / "sftunnel-cert.pem"
    cert = _cert(pushed)
    assert f"{cert.serial_number:02X}" in [line.split("\t")[3] for line in lines]
    assert tree.host_path(DeviceTree.CA_KEY).read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")


def test_sftunnel_conf_has_the_proxyssl_block_and_a_block_per_peer(seeded: Seeded) -> None:
    tree = seeded.tree(seeded.primary.identity)
    conf = tree.host_path(DeviceTree.SFTUNNEL_CONF).read_text()

    assert conf.startswith(PROXYSSL_BLOCK)
    assert "  proxy_cacert /etc/sf/ca_root/cacert.pem;\n" in conf
    assert "---->" not in conf
    assert conf.count("\npeer {\n") == len(seeded.plan.ftds) + 1
    for ftd in seeded.plan.ftds:
        assert f"  uuid {ftd.uuid};\n  name {ftd.name};\n  ip {ftd.ip};\n  kind ftd;\n}};" in conf
    assert f"  kind fmc;\n  port {seeded.secondary.sftunnel_port};\n}};" in conf
    assert tree.host_path("/etc/sf/ca_root/crl.pem").read_bytes().startswith(b"-----BEGIN X509 CRL-----")


def test_peer_record_round_trips_and_rejects_bad_fields() -> None:
    record = PeerRecord("u-1", "ftd-1", "127.0.0.9", "ftd", None, "7.2.5", "208")
    fmc = PeerRecord("u-2", "fmc-1", "127.0.0.8", "fmc", 8305, "7.2.9", "67")

    assert PeerRecord.from_json(record.to_json()) == record
    assert PeerRecord.from_json(fmc.to_json().encode()) == fmc
    with pytest.raises(ValueError, match="'kind'"):
        PeerRecord.from_json(record.to_json().replace('"ftd"', '"asa"'))
    with pytest.raises(ValueError, match="sftunnel_port"):
        PeerRecord.from_json(fmc.to_json().replace("8305", '"8305"'))
    with pytest.raises(ValueError, match="'ip'"):
        PeerRecord.from_json('{"uuid": "u", "name": "n", "kind": "ftd", "sw_version": "1", "sw_build": "2"}')
    with pytest.raises(ValueError, match="JSON object"):
        PeerRecord.from_json("[]")


def test_seeding_refuses_a_folder_that_has_content(tmp_path: Path, tmp_key_pool: KeyPool) -> None:
    plan = _plan(tmp_path, ftds=1)
    stale = plan.roots["ftd-0"] / "leftover"
    stale.parent.mkdir(parents=True)
    stale.write_text("x")

    with pytest.raises(ValueError, match="not empty"):
        seed_fleet(plan, keys=tmp_key_pool, now_utc=NOW)
    assert not plan.roots["fmc-a"].exists()


def test_write_file_atomic_replaces_content_with_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sftunnel-key.pem"
    target.write_bytes(b"old")
    target.chmod(0o600)

    write_file_atomic(target, b"new content")

    assert target.read_bytes() == b"new content"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["sftunnel-key.pem"]
    write_file_atomic(target, b"private", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(FileNotFoundError):
        write_file_atomic(tmp_path / "missing" / "file", b"x")


def test_append_line_creates_folders_and_adds_one_line_per_call(tmp_path: Path) -> None:
    log = tmp_path / "var" / "log" / "sf" / "sfca_generation.log"

    append_line(log, "first")
    append_line(log, "second\n")

    assert log.read_text() == "first\nsecond\n"
