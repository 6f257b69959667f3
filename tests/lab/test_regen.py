"""generate_certs.pl's work on a seeded fleet with live tunnels (device-facts 3 and 12)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from pipeline.certs import CertFacts, KeyFacts, issued_by, key_matches
from sftlab.fleet import pki
from sftlab.fleet.keys import KeyPool
from sftlab.fleet.layout import DeviceTree, PeerRecord
from sftlab.tools import regen
from tests.lab.test_sftunnel import Lab, run_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

FTDS = ("BSNS-1120-1", "EMEA-FPR3110-08", "FTDv")


def _cert(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def _title(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.TITLE)[0].value)


def _key_matches(cert: x509.Certificate, key_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.public_key() == cert.public_key()


# ---------------------------------------------------------------- the expiry line (pure over one file)


def _tree_with_ca(tmp_path: Path, keys: KeyPool, not_before_utc: datetime) -> DeviceTree:
    tree = DeviceTree(tmp_path / "fmc", "fmc")
    path = tree.host_path(tree.CA_CERT)
    path.parent.mkdir(parents=True)
    ca = pki.make_ca(
        keys.take(1)[0], fmc_uuid="cdb123c8-4347-11ef-aca1-f3aa241412a1", not_before_utc=not_before_utc
    )
    path.write_bytes(pki.cert_pem(ca))
    return tree


def test_ca_expiry_line_matches_the_cisco_sample(tmp_path: Path, key_pool: KeyPool) -> None:
    # device-facts 3.2: run at unix time 1728915794 against the CA made on Oct 11 2024 10:12:50.
    tree = _tree_with_ca(tmp_path, key_pool, datetime(2024, 10, 11, 10, 12, 50, tzinfo=UTC))
    now = datetime.fromtimestamp(1728915794, tz=UTC)
    assert (
        regen.ca_expiry_line(tree, now) == "Current ca_root expires in 3646 days - at Oct 9 10:12:50 2034 GMT"
    )


@pytest.mark.filterwarnings("error")
def test_ca_expiry_line_reads_a_v1_serial_zero_ca(tmp_path: Path, key_pool: KeyPool) -> None:
    """The v1 CA real FMCs hold (and `ca_format: v1` seeds) is read without cryptography's warning."""
    tree = DeviceTree(tmp_path / "fmc", "fmc")
    path = tree.host_path(tree.CA_CERT)
    path.parent.mkdir(parents=True)
    ca = pki.make_v1_ca(
        key_pool.take(1)[0],
        fmc_uuid="cdb123c8-4347-11ef-aca1-f3aa241412a1",
        not_before_utc=datetime(2024, 10, 11, 10, 12, 50, tzinfo=UTC),
    )
    path.write_bytes(ca.pem)
    now = datetime.fromtimestamp(1728915794, tz=UTC)
    assert (
        regen.ca_expiry_line(tree, now) == "Current ca_root expires in 3646 days - at Oct 9 10:12:50 2034 GMT"
    )


def test_ca_expiry_line_goes_negative_once_expired(tmp_path: Path, key_pool: KeyPool) -> None:
    not_before = datetime(2014, 10, 11, 10, 12, 50, tzinfo=UTC)
    tree = _tree_with_ca(tmp_path, key_pool, not_before)
    not_after = not_before + timedelta(days=3650)
    line = regen.ca_expiry_line(tree, not_after + timedelta(days=2, hours=1))
    assert line == "Current ca_root expires in -3 days - at Oct 8 10:12:50 2024 GMT"


# ---------------------------------------------------------------- regeneration on a live fleet


def _expected_stdout(lab: Lab, failed: list[str], ts: int) -> str:
    fmc = lab.devices["FMC-A"].uuid
    lines = [
        f"Failed to push to {name} = /var/sf/peers/{fmc}/{file}\n"
        for name in failed
        for file in ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")
    ]
    pointer = (
        "Some files were failed to be pushed to remote peers. "
        f"For more details check /var/tmp/certs/{ts}/FAILED_PUSH"
    )
    return "\n" + "".join(lines) + "\n" + pointer + "\n\n"


def _expected_failed_push(lab: Lab, failed: list[str]) -> str:
    fmc = lab.devices["FMC-A"].uuid
    text = ""
    for name in failed:
        dev = lab.devices[name]
        head = f"{dev.uuid} {name} {dev.ip}"
        text += f"{head} /etc/sf/ca_root/cacert.pem /var/sf/peers/{fmc}/cacert.pem\n"
        for file in ("sftunnel-key.pem", "sftunnel-cert.pem"):
            text += f"{head} /var/sf/peers/{dev.uuid}/certs_pushed//{file} /var/sf/peers/{fmc}/{file}\n"
    return text


def _copy_by_hand(lab: Lab, failed_push: str, ftd: str) -> None:
    """What an operator (or copy_sftunnel_certs.py) does with FAILED_PUSH: FMC source to FTD target."""
    for line in failed_push.splitlines():
        uuid, name, _ip, source, target = line.split(" ")
        if name == ftd:
            assert uuid == lab.devices[ftd].uuid
            data = lab.read("FMC-A", source.replace("//", "/"))
            lab.tree(ftd).host_path(target).write_bytes(data)


def test_regenerate_pushes_to_live_peers_and_reports_the_others(tmp_path: Path, key_pool: KeyPool) -> None:
    async def scenario(lab: Lab) -> None:
        down = ["BSNS-1120-1", "EMEA-FPR3110-08"]
        await lab.hub.connect_all(predate_expiry=False, down_at_start=[("FMC-A", name) for name in down])
        fmc = lab.devices["FMC-A"]
        old_ca = lab.read("FMC-A", DeviceTree.CA_CERT)
        old_own = lab.read("FMC-A", DeviceTree.SFTUNNEL_CERT)
        old_serial = int(lab.read("FMC-A", DeviceTree.CA_SERIAL), 16)
        old_index = lab.read("FMC-A", DeviceTree.CA_INDEX)
        now = datetime.now(UTC).replace(microsecond=0)
        ts = int(now.timestamp())

        report = await regen.regenerate(lab.hub, fmc, keys=key_pool, now_utc=now)

        assert report.run_dir == f"/var/tmp/certs/{ts}"
        assert report.stdout == _expected_stdout(lab, down, ts)
        assert report.failed_push_path == f"/var/tmp/certs/{ts}/FAILED_PUSH"
        failed_push = lab.read("FMC-A", report.failed_push_path).decode()
        assert failed_push == _expected_failed_push(lab, down)
        # The old CA root and keys are kept in the run folder.
        assert lab.read("FMC-A", f"{report.run_dir}/ca_root/cacert.pem") == old_ca
        assert lab.read("FMC-A", f"{report.run_dir}/keys/sftunnel-cert.pem") == old_own
        # A new CA, same subject, serial 1, 3650 days from now; everything else signed by it.
        new_ca = _cert(lab.read("FMC-A", DeviceTree.CA_CERT))
        assert new_ca.subject == _cert(old_ca).subject
        assert new_ca.serial_number == 1
        assert new_ca.not_valid_before_utc == now
        assert new_ca.not_valid_after_utc == now + timedelta(days=3650)
        assert _key_matches(new_ca, lab.read("FMC-A", DeviceTree.CA_KEY))
        own = _cert(lab.read("FMC-A", DeviceTree.SFTUNNEL_CERT))
        own.verify_directly_issued_by(new_ca)
        assert _title(own) == fmc.uuid
        serials = {own.serial_number}
        for name in FTDS:
            pushed = lab.tree("FMC-A").host_path(f"/var/sf/peers/{lab.devices[name].uuid}/certs_pushed")
            cert = _cert((pushed / "sftunnel-cert.pem").read_bytes())
            cert.verify_directly_issued_by(new_ca)
            assert _title(cert) == lab.devices[name].uuid
            assert _key_matches(cert, (pushed / "sftunnel-key.pem").read_bytes())
            assert (pushed / "sftunnel-key.pem").stat().st_mode & 0o777 == 0o644
            serials.add(cert.serial_number)
        assert min(serials) == old_serial
        assert len(serials) == 4
        index = lab.read("FMC-A", DeviceTree.CA_INDEX)
        assert index.startswith(old_index)
        assert len(index.splitlines()) == len(old_index.splitlines()) + 4
        assert int(lab.read("FMC-A", DeviceTree.CA_SERIAL), 16) == max(serials) + 1
        # The live peer holds the new files; the down ones still hold the old CA.
        live = lab.peer_folder("FTDv", "FMC-A")
        assert (live / "cacert.pem").read_bytes() == pki.cert_pem(new_ca)
        assert (live / "sftunnel-cert.pem").read_bytes() == lab.tree("FMC-A").host_path(
            f"/var/sf/peers/{lab.devices['FTDv'].uuid}/certs_pushed/sftunnel-cert.pem"
        ).read_bytes()
        assert (lab.peer_folder("BSNS-1120-1", "FMC-A") / "cacert.pem").read_bytes() == old_ca
        log = lab.read("FMC-A", DeviceTree.regen_log).decode()
        assert "Pushed certificates to FTDv" in log
        assert "Failed to push certificates to BSNS-1120-1" in log
        # The FMC does not restart sftunnel: the live tunnel stays up on the old session.
        assert lab.hub.is_connected("FMC-A", "FTDv")

        # Next handshake of the live peer: both ends use the new files.
        await lab.hub.restart("FTDv")
        assert lab.hub.is_connected("FMC-A", "FTDv")

        # A stale FTD (old CA, same subject, other key) refuses the FMC's new certificate.
        await lab.hub.restart("BSNS-1120-1")
        assert not lab.hub.is_connected("FMC-A", "BSNS-1120-1")
        own_dn = pki.oneline_dn(own.subject)
        for device in ("BSNS-1120-1", "FMC-A"):
            messages = lab.messages(device)
            assert "err 7:certificate signature failure" in messages
            assert f"  subject = {own_dn}" in messages

        # Copying the files named in FAILED_PUSH by hand, then restarting, brings it back.
        _copy_by_hand(lab, failed_push, "EMEA-FPR3110-08")
        await lab.hub.restart("EMEA-FPR3110-08")
        assert lab.hub.is_connected("FMC-A", "EMEA-FPR3110-08")

    run_lab(tmp_path, key_pool, scenario, ftds=FTDS)


def test_regenerate_rescues_tunnels_that_predate_an_expired_ca(tmp_path: Path, key_pool: KeyPool) -> None:
    async def scenario(lab: Lab) -> None:
        await lab.hub.connect_all(predate_expiry=True, down_at_start=[("FMC-A", "FTD-2")])
        assert lab.hub.is_connected("FMC-A", "FTD-1")
        now = datetime.now(UTC)
        # Seeded to have expired 4 days ago at seeding time; a moment later that is floor(-4.0...) = -5.
        assert "expires in -5 days" in regen.ca_expiry_line(lab.tree("FMC-A"), now)

        report = await regen.regenerate(lab.hub, lab.devices["FMC-A"], keys=key_pool, now_utc=now)
        assert "Failed to push to FTD-2 = " in report.stdout
        assert "FTD-1" not in report.stdout

        await lab.hub.restart("FTD-1")
        assert lab.hub.is_connected("FMC-A", "FTD-1")
        await lab.hub.restart("FTD-2")
        assert not lab.hub.is_connected("FMC-A", "FTD-2")
        assert "err 10:certificate has expired" in lab.messages("FTD-2")

    run_lab(tmp_path, key_pool, scenario, ca_days_left=-4)


def test_regenerate_with_every_tunnel_up_pushes_to_the_ha_peer_too(tmp_path: Path, key_pool: KeyPool) -> None:
    async def scenario(lab: Lab) -> None:
        await lab.hub.connect_all(predate_expiry=False)
        old_b_ca = lab.read("FMC-B", DeviceTree.CA_CERT)

        report = await regen.regenerate(
            lab.hub, lab.devices["FMC-A"], keys=key_pool, now_utc=datetime.now(UTC)
        )

        assert report.stdout == "\n"
        assert report.failed_push_path is None
        assert not lab.tree("FMC-A").host_path(f"{report.run_dir}/FAILED_PUSH").exists()
        new_ca = lab.read("FMC-A", DeviceTree.CA_CERT)
        assert (lab.peer_folder("FMC-B", "FMC-A") / "cacert.pem").read_bytes() == new_ca
        assert lab.read("FMC-B", DeviceTree.CA_CERT) == old_b_ca  # each FMC has its own InternalCA
        for device in ("FMC-B", "FTD-1"):
            await lab.hub.restart(device)
        assert all(s.connected for s in lab.hub.peer_states("FMC-A"))
        assert all(s.connected for s in lab.hub.peer_states("FMC-B"))
        assert all(s.connected for s in lab.hub.peer_states("FTD-1"))

    run_lab(tmp_path, key_pool, scenario, fmcs=("FMC-A", "FMC-B"), ftds=("FTD-1",))


def _openssl_text(path: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(path)], capture_output=True, text=True, check=True
    ).stdout


def _make_ca_v1(lab: Lab, fmc: str, key_pool: KeyPool) -> bytes:
    """Give `fmc` a v1 serial-0 CA (a new key, the same subject), as `ca_format: v1` seeds it; only
    generate_certs.pl reads it here (for its format), the live tunnels keep their sessions."""
    tree = lab.tree(fmc)
    key = key_pool.take(1)[0]
    ca = pki.make_v1_ca(key, fmc_uuid=lab.devices[fmc].uuid, not_before_utc=datetime.now(UTC))
    tree.host_path(tree.CA_CERT).write_bytes(ca.pem)
    tree.host_path(tree.CA_KEY).write_bytes(pki.key_pem(key))
    return ca.pem


@pytest.mark.filterwarnings("error")
def test_regenerate_keeps_the_v1_format_of_the_fmcs_ca(tmp_path: Path, key_pool: KeyPool) -> None:
    async def scenario(lab: Lab) -> None:
        await lab.hub.connect_all(predate_expiry=False)
        old_ca = _make_ca_v1(lab, "FMC-A", key_pool)
        now = datetime.now(UTC).replace(microsecond=0)

        report = await regen.regenerate(lab.hub, lab.devices["FMC-A"], keys=key_pool, now_utc=now)

        assert report.stdout == "\n"
        new_pem = lab.read("FMC-A", DeviceTree.CA_CERT)
        new_ca, old = CertFacts.from_pem(new_pem), CertFacts.from_pem(old_ca)
        assert (new_ca.version, new_ca.serial, new_ca.is_ca) == (1, 0, True)
        assert new_ca.sha256 != old.sha256
        assert new_ca.subject_text == old.subject_text
        assert (new_ca.not_before_utc, new_ca.not_after_utc) == (now, now + timedelta(days=3650))
        assert key_matches(new_ca, KeyFacts.from_pem(lab.read("FMC-A", DeviceTree.CA_KEY)))
        printed = _openssl_text(lab.tree("FMC-A").host_path(DeviceTree.CA_CERT))
        assert "Version: 1 (0x0)" in printed
        assert "Serial Number: 0 (0x0)" in printed
        assert "X509v3" not in printed
        assert issued_by(lab.read("FMC-A", DeviceTree.SFTUNNEL_CERT), new_pem)
        ftd_folder = lab.peer_folder("FTD-1", "FMC-A")
        assert (ftd_folder / "cacert.pem").read_bytes() == new_pem
        assert issued_by((ftd_folder / "sftunnel-cert.pem").read_bytes(), new_pem)
        assert "Generated new ca_root /title=InternalCA/" in lab.read("FMC-A", DeviceTree.regen_log).decode()
        # The next handshake trusts the new v1 CA at both ends.
        await lab.hub.restart("FTD-1")
        assert lab.hub.is_connected("FMC-A", "FTD-1")

    run_lab(tmp_path, key_pool, scenario, ftds=("FTD-1",))


def test_failed_push_lines_match_the_cisco_sample_byte_for_byte() -> None:
    """device-facts 3.3, the double slash after certs_pushed included."""
    fmc = "cdb123c8-4347-11ef-aca1-f3aa241412a1"
    peers = [
        PeerRecord(
            "c8d5d5c6-87c9-11ef-a993-b9831565bc4e", "BSNS-1120-1", "10.48.67.54", "ftd", None, "7.2.5", "208"
        ),
        PeerRecord(
            "6bf1143a-8a2e-11ef-92d8-fd927e807d77",
            "EMEA-FPR3110-08",
            "10.48.189.37",
            "ftd",
            None,
            "7.2.5",
            "208",
        ),
    ]
    text = "".join(line + "\n" for peer in peers for line in regen.failed_push_lines(fmc, peer))
    assert text == (Path(__file__).parent / "data" / "FAILED_PUSH.golden").read_text()
