"""Real bash on the devices: files land in the right device folder; the Cisco tools do what section 3 says."""

from __future__ import annotations

import hashlib
import re

import pytest
from cryptography import x509

from tests.lab.client import ADMIN_PROMPT, CLISH_PROMPT, Shell
from tests.lab.fixtures import MakeLab, RunningLab

pytestmark = pytest.mark.lab

PEM_BODY = "-----BEGIN CERTIFICATE-----\nMIIBfake/etc/sf/not-a-path\n-----END CERTIFICATE-----\n"


def test_heredoc_and_mv_land_in_the_device_folder(shared_lab: RunningLab) -> None:
    fmc_uuid = shared_lab.device("fmc-primary")["uuid"]
    folder = f"/var/sf/peers/{fmc_uuid}"
    with shared_lab.root_shell("ftd-002") as shell:
        shell.send(f"cat > {folder}/probe.pem.tmp <<'EOF'")
        for line in PEM_BODY.splitlines():
            shell.expect("> $")
            shell.send(line)
        shell.expect("> $")
        shell.send("EOF")
        shell.expect(re.compile(r"# $"))
        out = shell.run(
            f"mv {folder}/probe.pem.tmp {folder}/probe.pem && chmod 644 {folder}/probe.pem && "
            f"sha256sum {folder}/probe.pem; echo rc=$?"
        )
    digest = hashlib.sha256(PEM_BODY.encode()).hexdigest()
    assert out == f"{digest}  {folder}/probe.pem\nrc=0\n"
    on_disk = shared_lab.file("ftd-002", f"/ngfw{folder}/probe.pem")
    assert on_disk.read_text() == PEM_BODY
    assert oct(on_disk.stat().st_mode & 0o777) == "0o644"
    assert not shared_lab.file("ftd-001", f"/ngfw{folder}/probe.pem").exists()
    on_disk.unlink()


def test_both_ftd_spellings_and_base64(shared_lab: RunningLab) -> None:
    with shared_lab.root_shell("ftd-003") as shell:
        uuid = shell.run("grep APPLIANCE_UUID /etc/sf/ims.conf | cut -d= -f2").strip()
        assert uuid == shared_lab.device("ftd-003")["uuid"]
        assert shell.run("cmp /etc/sf/ims.conf /ngfw/etc/sf/ims.conf && echo same") == "same\n"
        assert (
            shell.run("echo $SF_ROOT_PATH; ls -1 /ngfw/usr/local/sf/bin")
            == "/ngfw\npmtool\nsftunnel_status.pl\n"
        )
        assert shell.run("echo aGVsbG8K | base64 -d && false; echo $?") == "hello\n1\n"
        assert shell.run("cd /var/sf/peers && pwd") == "/var/sf/peers\n"
        assert shell.transcript.endswith("root@ftd-003:/var/sf/peers# ")


def test_openssl_reads_the_device_ca(shared_lab: RunningLab) -> None:
    with shared_lab.root_shell("fmc-primary") as shell:
        out = shell.run("openssl x509 -noout -subject -enddate -in /etc/sf/ca_root/cacert.pem")
    uuid = shared_lab.device("fmc-primary")["uuid"]
    assert re.search(rf"title ?= ?InternalCA, OU ?= ?Intrusion Management System, CN ?= ?{uuid}", out)
    assert "notAfter=" in out


def _answer_generate(shell: Shell, answers: tuple[str, str] = ("yes", "yes")) -> str:
    """Run generate_certs.pl answering its two prompts; return everything it printed."""
    start = len(shell.transcript)
    shell.send("generate_certs.pl")
    shell.expect(re.escape("Do you want to continue? [yes/no]:"))
    shell.send(answers[0])
    if answers[0] == "yes":
        shell.expect(re.escape("Do you want to continue? [yes/no]:"))
        shell.send(answers[1])
    shell.expect(re.compile(r"# $"), timeout=120)
    return shell.transcript[start:]


def _ca(lab: RunningLab, fmc: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(lab.file(fmc, "/etc/sf/ca_root/cacert.pem").read_bytes())


def test_generate_certs_no_changes_nothing(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    before = _ca(lab, "fmc-primary")
    with lab.root_shell("fmc-primary") as shell:
        out = _answer_generate(shell, ("no", "no"))
        assert "Aborted." in out
        assert shell.run("echo $?") == "1\n"
    assert _ca(lab, "fmc-primary") == before


def test_generate_certs_pushes_live_and_lists_the_rest(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=3, devices={"ftd-002": {"tunnel": "down"}})
    fmc_uuid = lab.device("fmc-primary")["uuid"]
    old_ca = _ca(lab, "fmc-primary")
    with lab.root_shell("fmc-primary") as shell:
        out = _answer_generate(shell)
    assert re.search(
        r"Current ca_root expires in 364[89] days - at \w{3} \d{1,2} \d\d:\d\d:\d\d \d{4} GMT\n", out
    )
    new_ca = _ca(lab, "fmc-primary")
    assert new_ca != old_ca
    assert new_ca.subject == old_ca.subject
    ftd2 = lab.device("ftd-002")
    expected = [
        f"Failed to push to ftd-002 = /var/sf/peers/{fmc_uuid}/{f}"
        for f in ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")
    ]
    assert [line for line in out.splitlines() if line.startswith("Failed to push")] == expected
    match = re.search(r"For more details check (/var/tmp/certs/\d+/FAILED_PUSH)\n", out)
    assert match and "Scalars leaked: 1" in out
    failed = lab.file("fmc-primary", match.group(1)).read_text()
    u = ftd2["uuid"]
    assert failed.splitlines() == [
        f"{u} ftd-002 {ftd2['host']} /etc/sf/ca_root/cacert.pem /var/sf/peers/{fmc_uuid}/cacert.pem",
        f"{u} ftd-002 {ftd2['host']} /var/sf/peers/{u}/certs_pushed//sftunnel-key.pem "
        f"/var/sf/peers/{fmc_uuid}/sftunnel-key.pem",
        f"{u} ftd-002 {ftd2['host']} /var/sf/peers/{u}/certs_pushed//sftunnel-cert.pem "
        f"/var/sf/peers/{fmc_uuid}/sftunnel-cert.pem",
    ]
    # Pushed over the live tunnel: ftd-001 and the secondary FMC now hold the new CA; ftd-002 does not.
    for name in ("ftd-001", "ftd-003", "fmc-secondary"):
        held = lab.file(name, f"/var/sf/peers/{fmc_uuid}/cacert.pem").read_bytes()
        assert x509.load_pem_x509_certificate(held) == new_ca, name
    stale = lab.file("ftd-002", f"/ngfw/var/sf/peers/{fmc_uuid}/cacert.pem").read_bytes()
    assert x509.load_pem_x509_certificate(stale) == old_ca
    # Tunnels that were up stay up (the FMC does not restart sftunnel).
    assert lab.connected("fmc-primary", "ftd-001")


def _copy_certs_by_hand(lab: RunningLab, fmc: str, ftd: str) -> None:
    """What an operator does for a FAILED_PUSH device: the three files into the FTD's peer folder."""
    fmc_uuid, ftd_uuid = lab.device(fmc)["uuid"], lab.device(ftd)["uuid"]
    files = {
        "cacert.pem": lab.file(fmc, "/etc/sf/ca_root/cacert.pem"),
        "sftunnel-cert.pem": lab.file(fmc, f"/var/sf/peers/{ftd_uuid}/certs_pushed/sftunnel-cert.pem"),
        "sftunnel-key.pem": lab.file(fmc, f"/var/sf/peers/{ftd_uuid}/certs_pushed/sftunnel-key.pem"),
    }
    with lab.root_shell(ftd) as shell:
        for name, source in files.items():
            data = source.read_text()
            shell.send(f"cat > /var/sf/peers/{fmc_uuid}/{name} <<'EOF'\n{data}EOF")
            shell.expect(re.compile(r"# $"))
        shell.run("pmtool restartbyid sftunnel")


def test_restart_with_new_files_reconnects_and_with_stale_files_fails(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=2, devices={"ftd-002": {"tunnel": "down"}})
    with lab.root_shell("fmc-primary") as shell:
        _answer_generate(shell)
    # ftd-001 got the files over its live tunnel; ftd-002 did not. Restart both.
    lab.restart_sftunnel("ftd-001")
    assert lab.connected("fmc-primary", "ftd-001")
    with lab.root_shell("ftd-002") as shell:
        assert shell.run("pmtool restartbyid sftunnel; echo rc=$?") == "rc=0\n"
    assert not lab.connected("fmc-primary", "ftd-002")
    messages = lab.file("ftd-002", "/ngfw/var/log/messages").read_text()
    assert "sftunneld:sf_ssl [ERROR]" in messages and "Connect:SSL handshake failed" in messages
    _copy_certs_by_hand(lab, "fmc-primary", "ftd-002")
    assert lab.connected("fmc-primary", "ftd-002")


def test_sftunnel_status_reports_the_real_state(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=2, devices={"ftd-002": {"tunnel": "down"}})
    ip1, ip2 = lab.device("ftd-001")["host"], lab.device("ftd-002")["host"]
    with lab.root_shell("fmc-primary") as shell:
        out = shell.run("sftunnel_status.pl")
        block1 = out.split(f"**RUN STATUS****{ip1}*")[1].split("***********************")[0]
        block2 = out.split(f"**RUN STATUS****{ip2}*")[1].split("***********************")[0]
        assert "ChannelA Connected: Yes" in block1 and "Heartbeat Received Time:" in block1
        assert "Connected: Yes" not in block2 and "Last disconnect reason :" in block2
        single = shell.run(f"sftunnel_status.pl {lab.device('ftd-001')['uuid']} 2>/dev/null")
        assert ip2 not in single and f"**RUN STATUS****{ip1}*" in single
    with lab.shell("ftd-001") as shell:
        shell.expect(CLISH_PROMPT)
        shell.send("sftunnel-status")
        out = shell.expect(CLISH_PROMPT)
        assert f"**RUN STATUS****{lab.device('fmc-primary')['host']}*" in out
        shell.send("sftunnel-status-brief")
        brief = shell.expect(CLISH_PROMPT).splitlines()
        assert brief[1] == f"PEER:{lab.device('fmc-primary')['host']}"
        assert brief[2].startswith("Peer channel Channel-A is valid type (CONTROL), using 'eth0'")
        assert sum(line.startswith("PEER:") for line in brief) == 2


def test_expired_ca_tunnels_stay_up_until_restarted(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=2, scenarios="expired")
    ca = _ca(lab, "fmc-primary")
    assert ca.not_valid_after_utc < lab.fleet.started_utc
    assert lab.connected("fmc-primary", "ftd-001") and lab.connected("fmc-secondary", "ftd-001")
    lab.restart_sftunnel("ftd-001")
    assert not lab.connected("fmc-primary", "ftd-001")
    assert not lab.connected("fmc-secondary", "ftd-001")
    assert lab.connected("fmc-primary", "ftd-002")
    ftd_log = lab.file("ftd-001", "/ngfw/var/log/messages").read_text()
    fmc_log = lab.file("fmc-primary", "/var/log/messages").read_text()
    assert "err 10:certificate has expired" in ftd_log
    assert re.search(
        r"^\w{3} [ \d]\d \d\d:\d\d:\d\d fmc-primary SF-IMS\[\d+\]: \[\d+\] sftunneld:sf_ssl \[ERROR\]",
        fmc_log,
        re.M,
    )


def test_admin_home_is_private_to_the_device(shared_lab: RunningLab) -> None:
    with shared_lab.shell("ftd-004") as shell:
        shell.expect(CLISH_PROMPT)
        shell.send("expert")
        shell.expect(ADMIN_PROMPT)
        shell.run("echo note > ~/note.txt; echo $HOME", ADMIN_PROMPT)
    assert shared_lab.file("ftd-004", "/home/admin/note.txt").read_text() == "note\n"
