"""Legacy InternalCAs in the lab: `ca_format: v1` makes an FMC's CA X.509 v1 with serial 0, as real FMCs
probably hold it (device-facts 6.1), at seeding and after every `generate_certs.pl`.

The CA is judged by the openssl command line (not by the code under test), the tunnels by real OpenSSL
through Python's ssl, and the renewal runs with warnings as errors: cryptography's serial-0 warning must not
reach an operator.
"""

from __future__ import annotations

import subprocess

import pytest

from pipeline.certs import CertFacts, issued_by
from pipeline.secrets import read_inventory
from pipeline.steps.pair import run_pair
from pipeline.steps.verify import Verdict
from tests.lab.fixtures import MakeLab, RunningLab
from tests.lab.test_steps import FAST, factory_for

pytestmark = pytest.mark.lab

FMCS = ("fmc-primary", "fmc-secondary")
FTDS = ("ftd-001", "ftd-002")
CA_CERT = "/etc/sf/ca_root/cacert.pem"


def _openssl_text(lab: RunningLab, fmc: str) -> str:
    done = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(lab.file(fmc, CA_CERT))],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _assert_v1_serial_zero(lab: RunningLab, fmc: str) -> None:
    text = _openssl_text(lab, fmc)
    assert "Version: 1 (0x0)" in text
    assert "Serial Number: 0 (0x0)" in text
    assert "X509v3" not in text  # no extensions at all
    uuid = lab.device(fmc)["uuid"]
    subject = f'title = InternalCA, OU = Intrusion Management System, CN = {uuid}, O = "Cisco Systems, Inc"'
    assert f"Issuer: {subject}\n" in text
    assert f"Subject: {subject}\n" in text


def _ca_pem(lab: RunningLab, fmc: str) -> bytes:
    return lab.file(fmc, CA_CERT).read_bytes()


def _every_peer_holds_the_ca_of(lab: RunningLab, fmc: str) -> None:
    """Each FTD and the other FMC hold `fmc`'s CA in their folder for it, and a certificate it signed."""
    ca = _ca_pem(lab, fmc)
    folder = f"/var/sf/peers/{lab.device(fmc)['uuid']}"
    for peer in (*FTDS, *(other for other in FMCS if other != fmc)):
        assert lab.file(peer, f"{folder}/cacert.pem").read_bytes() == ca
        assert issued_by(lab.file(peer, f"{folder}/sftunnel-cert.pem").read_bytes(), ca)


@pytest.mark.filterwarnings("error")
def test_v1_cas_are_seeded_renewed_and_stay_v1(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=len(FTDS), devices={fmc: {"ca_format": "v1"} for fmc in FMCS})

    # Seeded: both CAs are v1 with serial 0, every peer trusts them, and every tunnel is up (OpenSSL
    # accepted the v1 self-signed CA as the trust anchor at both ends of every handshake).
    before = {}
    for fmc in FMCS:
        _assert_v1_serial_zero(lab, fmc)
        _every_peer_holds_the_ca_of(lab, fmc)
        before[fmc] = CertFacts.from_pem(_ca_pem(lab, fmc))
        assert (before[fmc].version, before[fmc].serial, before[fmc].is_ca) == (1, 0, True)
        for peer in (*FTDS, *(other for other in FMCS if other != fmc)):
            assert lab.connected(fmc, peer), (fmc, peer)

    # A full in-process renewal of the pair, as `python -m pipeline.steps` runs it.
    runs = run_pair(factory_for(lab), read_inventory(lab.directory / "inventory.yaml").pair("lab"), FAST)

    assert [run.backup.fmc for run in runs] == list(FMCS)
    for run in runs:
        fmc = run.backup.fmc
        assert run.backup.ca_sha256 == before[fmc].sha256
        assert run.regenerate.ran
        assert all(push.ok for push in run.pushes), run.pushes
        assert run.verify.ok, run.verify.devices
        assert {d.name: d.verdict for d in run.verify.devices} == {
            **dict.fromkeys(FTDS, Verdict.VERIFIED),
            **{other: Verdict.VERIFIED for other in FMCS if other != fmc},
        }
        # generate_certs.pl kept the format: a new v1 CA with serial 0, not the old one.
        _assert_v1_serial_zero(lab, fmc)
        after = CertFacts.from_pem(_ca_pem(lab, fmc))
        assert (after.version, after.serial) == (1, 0)
        assert after.sha256 != before[fmc].sha256
        assert after.subject_text == before[fmc].subject_text
        _every_peer_holds_the_ca_of(lab, fmc)

    # The next handshake of every FTD uses the new files: the new v1 CAs are trust anchors too.
    for ftd in FTDS:
        lab.restart_sftunnel(ftd)
        for fmc in FMCS:
            assert lab.connected(fmc, ftd), (fmc, ftd)
