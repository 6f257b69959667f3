"""pipeline.parsing against golden tool output: Cisco's samples (device-facts) and a real lab run.

`data/device_facts/` holds the verbatim code blocks of docs/device-facts.md, which the project ships (a test
proves they have not drifted, and fails if the file is missing); `data/lab/` holds what a lab fleet printed
(3 FTDs, ftd-002's tunnel down), with `devices.json` naming the UUID and address of each device of that run.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.parsing import (
    FailedPush,
    FailedPushLine,
    ParseError,
    PeerTunnel,
    RegenOutput,
    ctime_utc,
    gmt_date_utc,
    parse_failed_push,
    parse_generate_certs,
    parse_ims_conf,
    parse_openssl_enddate,
    parse_tunnel_status,
    parse_tunnel_status_brief,
)
from sftlab.tools.programs import CONTINUE, GENERATE_INTRO

DATA = Path(__file__).parent / "data"
FACTS = DATA / "device_facts"
LAB = DATA / "lab"
REPO = Path(__file__).resolve().parents[2]
#: Shipped with the project: a clone without it fails here, never skips.
DEVICE_FACTS_MD = REPO / "docs" / "device-facts.md"

FMC_UUID = "cdb123c8-4347-11ef-aca1-f3aa241412a1"
BSNS = "c8d5d5c6-87c9-11ef-a993-b9831565bc4e"
EMEA = "6bf1143a-8a2e-11ef-92d8-fd927e807d77"
DOWN_REASON = "Both control and event channel connections with peer went down"
LAB_TIME = "Fri Nov 27 12:10:28 2026"


def _facts(name: str) -> str:
    return (FACTS / name).read_text(encoding="utf-8")


def _lab(name: str) -> str:
    return (LAB / name).read_text(encoding="utf-8")


def _lab_device(name: str) -> tuple[str, str]:
    """(uuid, ip) of a device of the recorded lab run."""
    entry = json.loads(_lab("devices.json"))[name]
    return entry["uuid"], entry["ip"]


# ---------------------------------------------------------------- the goldens themselves

FACTS_GOLDENS = {
    "ftd62_sftunnel_status.txt",
    "brief_down.txt",
    "brief_up.txt",
    "fmc_status_with_ip.txt",
    "rpc_failure.txt",
    "synthesized_full_status.txt",
    "generate_certs_run.txt",
    "FAILED_PUSH",
    "failed_push_transcript.txt",
}


def test_the_device_facts_goldens_are_all_here() -> None:
    assert {path.name for path in FACTS.iterdir()} == FACTS_GOLDENS


@pytest.mark.parametrize("name", sorted(FACTS_GOLDENS))
def test_each_device_facts_golden_is_verbatim_in_device_facts_md(name: str) -> None:
    text = _facts(name)
    assert text.endswith("\n")
    assert text in DEVICE_FACTS_MD.read_text(encoding="utf-8")


# ---------------------------------------------------------------- sftunnel_status.pl, Cisco samples


def test_ftd62_sample_connected_and_truncated() -> None:
    report = parse_tunnel_status(_facts("ftd62_sftunnel_status.txt"))

    assert report.start_time == "Tue Oct 11 21:44:44 2016"
    assert report.management_ips == ("10.83.57.37", "2001:420:2710:2556:1:0:0:37")
    assert report.warnings == ()
    assert report.peers == (
        PeerTunnel(
            peer="10.83.57.41",
            ip="10.83.57.41",
            channel_a=True,
            channel_b=True,
            registration="Completed",
            cipher="AES256-GCM-SHA384",
            started="Tue Oct 11 21:46:00 2016",
            sw_version="6.2.0",
            sw_build="2007",
        ),
    )
    assert report.peers[0].connected


SYNTH_UP = PeerTunnel(
    peer="10.48.67.54",
    ip="10.48.67.54",
    channel_a=True,
    channel_b=True,
    registration="Completed",
    cipher="AES256-GCM-SHA384",
    started="Mon Oct 14 12:42:10 2024 UTC",
    heartbeat_sent="Mon Oct 14 14:21:02 2024 UTC",
    heartbeat_received="Mon Oct 14 14:21:10 2024 UTC",
    sw_version="7.2.5",
    sw_build="208",
)
SYNTH_DOWN = PeerTunnel(
    peer="10.48.189.37",
    ip="10.48.189.37",
    registration="Completed",
    last_attempt="Mon Oct 14 14:19:51 2024 UTC",
    last_disconnect="Mon Oct 14 13:55:24 2024 UTC",
    disconnect_reason=DOWN_REASON,
)


def test_synthesized_full_block() -> None:
    report = parse_tunnel_status(_facts("synthesized_full_status.txt"))

    assert report.start_time == "Mon Oct 14 12:40:04 2024"
    assert report.management_ips == ("10.48.79.232",)
    assert report.peers == (SYNTH_UP, SYNTH_DOWN)
    assert [peer.connected for peer in report.peers] == [True, False]


def _reindent(text: str, indent: str) -> str:
    return "\n".join(indent * (len(line) - len(line.lstrip())) + line.lstrip() for line in text.split("\n"))


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda t: _reindent(t, ""), id="no-indentation"),
        pytest.param(lambda t: t.replace(" " * 8, "\t"), id="tabs"),
        pytest.param(lambda t: _reindent(t, " ").replace("\n", "\n  "), id="odd-spaces"),
        pytest.param(lambda t: t.replace("\n", "\r\n"), id="pty-crlf"),
    ],
)
def test_indentation_and_line_endings_do_not_matter(variant: Callable[[str], str]) -> None:
    text = _facts("synthesized_full_status.txt")
    assert parse_tunnel_status(variant(text)) == parse_tunnel_status(text)


def test_rpc_failure_sample_with_its_warnings() -> None:
    report = parse_tunnel_status(_facts("rpc_failure.txt"))

    assert report.peers == (PeerTunnel(peer="PEERIP", rpc_ok=False),)
    assert not report.peers[0].connected
    assert report.warnings == (
        "peer UUID did not reply at /ngfw/usr/local/sf/bin/sftunnel_status.pl line 309.",
        "Retry rpc status poll at /ngfw/usr/local/sf/bin/sftunnel_status.pl line 315.",
    )
    assert report.start_time is None


def test_fmc_sample_with_a_peer_argument_names_the_peer() -> None:
    report = parse_tunnel_status(_facts("fmc_status_with_ip.txt"))

    assert report.requested_peer == "198.51.100.100"
    assert report.peers == ()  # the sample elides the RUN STATUS header its PEER INFO belongs to
    assert report.management_ips == ()  # 198.51.100.100 there is the peer's interface, not the FMC's


@pytest.mark.parametrize(("first", "last"), [("Failed", "Succeeded"), ("Succeeded", "Failed")])
def test_a_retried_rpc_poll_keeps_the_last_result(first: str, last: str) -> None:
    block = "**RPC STATUS****10.0.0.9*************\n"
    text = f"{block}RPC status :{first}\n{block}'uuid' => 'AB-1',\n'active' => 1,\nRPC status :{last}\n"
    expected = PeerTunnel(peer="10.0.0.9", ip="10.0.0.9", uuid="AB-1", rpc_ok=last == "Succeeded")
    assert parse_tunnel_status(text).peers == (expected,)


@pytest.mark.parametrize(
    ("channel_lines", "expected"),
    [
        ("ChannelA Connected: Yes, Interface eth0\nChannelB Connected: No\n", (True, False)),
        ("ChannelA Connected: Yes, Interface eth0\n", (True, False)),
        ("ChannelB Connected: Yes, Interface eth0\nChannelA Connected: No, Interface eth0\n", (False, True)),
    ],
)
def test_a_half_up_peer_is_not_connected(channel_lines: str, expected: tuple[bool, bool]) -> None:
    text = (
        f"SFTUNNEL Start Time: Mon Oct 14 12:40:04 2024\n**RUN STATUS****fmc-b*************\n{channel_lines}"
    )
    (peer,) = parse_tunnel_status(text).peers
    assert (peer.channel_a, peer.channel_b, peer.connected) == (*expected, False)
    assert (peer.peer, peer.ip) == ("fmc-b", None)  # a name in the header is not an address


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "bash: sftunnel_status.pl: command not found\n",
        "PEER:10.10.17.202\nRegistration: Completed.\n",
    ],
)
def test_text_that_is_not_status_output_is_refused(text: str) -> None:
    with pytest.raises(ParseError, match=r"expected sftunnel_status\.pl output") as caught:
        parse_tunnel_status(text)
    assert "command not found" not in str(caught.value)


# ---------------------------------------------------------------- sftunnel_status.pl, the lab


def _lab_peers_expected() -> tuple[PeerTunnel, ...]:
    peers = []
    for name in ("fmc-secondary", "ftd-001", "ftd-002", "ftd-003"):
        uuid, ip = _lab_device(name)
        if name == "ftd-002":
            peers.append(
                PeerTunnel(
                    peer=ip,
                    ip=ip,
                    registration="Completed",
                    last_attempt=f"{LAB_TIME} UTC",
                    last_disconnect=f"{LAB_TIME} UTC",
                    disconnect_reason=DOWN_REASON,
                    rpc_ok=False,
                )
            )
            continue
        peers.append(
            PeerTunnel(
                peer=ip,
                ip=ip,
                uuid=uuid,
                channel_a=True,
                channel_b=True,
                registration="Completed",
                cipher="AES256-GCM-SHA384",
                started=f"{LAB_TIME} UTC",
                heartbeat_sent=f"{LAB_TIME} UTC",
                heartbeat_received=f"{LAB_TIME} UTC",
                # The lab's FMCs run 7.2.9 (build 78), its FTDs 7.2.5 (build 208).
                sw_version="7.2.9" if name.startswith("fmc") else "7.2.5",
                sw_build="78" if name.startswith("fmc") else "208",
                rpc_ok=True,
            )
        )
    return tuple(peers)


def test_lab_fmc_status_stdout() -> None:
    report = parse_tunnel_status(_lab("fmc_status_stdout.txt"))

    assert report.start_time == LAB_TIME
    assert report.management_ips == (_lab_device("fmc-primary")[1],)
    assert report.peers == _lab_peers_expected()
    assert [p.connected for p in report.peers] == [True, True, False, True]
    assert report.warnings == ()


def test_lab_fmc_status_on_a_pty_has_stderr_merged_in() -> None:
    stdout_only = parse_tunnel_status(_lab("fmc_status_stdout.txt"))
    merged = parse_tunnel_status(_lab("fmc_status_pty.txt"))
    ftd2_uuid, ftd2_ip = _lab_device("ftd-002")

    assert merged.warnings == (
        f"{ftd2_uuid} did not reply at /usr/local/sf/bin/sftunnel_status.pl line 309.",
        "Retry rpc status poll at /usr/local/sf/bin/sftunnel_status.pl line 315.",
    )
    assert dataclasses.replace(merged, warnings=()) == stdout_only
    ftd2 = merged.peer(ftd2_ip)
    assert ftd2 is not None
    assert (ftd2.connected, ftd2.uuid) == (False, None)  # a down peer's RPC block carries no UUID


def test_lab_fmc_status_for_one_peer() -> None:
    report = parse_tunnel_status(_lab("fmc_status_peer_down_pty.txt"))
    _, ftd2_ip = _lab_device("ftd-002")

    assert report.requested_peer == ftd2_ip
    assert report.peers == _lab_peers_expected()[2:3]
    assert len(report.warnings) == 3


def test_peer_lookup_by_header_ip_or_uuid() -> None:
    report = parse_tunnel_status(_lab("fmc_status_pty.txt"))
    uuid, ip = _lab_device("ftd-003")

    assert report.peer(ip) == report.peer(uuid) == report.peer(uuid.upper()) == report.peers[3]
    assert report.peer("10.99.99.99") is None
    assert report.peer(_lab_device("ftd-002")[0]) is None  # down: its UUID is nowhere in the output


def test_lab_ftd_clish_status_lists_both_fmcs() -> None:
    report = parse_tunnel_status(_lab("ftd_clish_status_up.txt"))

    assert report.management_ips == (_lab_device("ftd-001")[1],)
    assert [(p.ip, p.uuid, p.connected) for p in report.peers] == [
        (_lab_device("fmc-primary")[1], _lab_device("fmc-primary")[0], True),
        (_lab_device("fmc-secondary")[1], _lab_device("fmc-secondary")[0], True),
    ]


def test_truncated_output_never_breaks_the_parser() -> None:
    """Cut anywhere (a dropped session): a report, or ParseError only before the first landmark."""
    text = _lab("fmc_status_pty.txt")
    first_line = len(text.split("\n", 1)[0])
    for cut in range(0, len(text), 7):
        try:
            report = parse_tunnel_status(text[:cut])
        except ParseError:
            assert cut < first_line
        else:
            assert len(report.peers) <= 4


# ---------------------------------------------------------------- sftunnel-status-brief


def test_brief_cisco_samples() -> None:
    down = parse_tunnel_status_brief(_facts("brief_down.txt"))
    up = parse_tunnel_status_brief(_facts("brief_up.txt"))

    assert down == [
        PeerTunnel(
            peer="10.10.17.202",
            ip="10.10.17.202",
            registration="Completed",
            last_attempt="Mon Jun 15 09:21:57 2020 UTC",
            last_disconnect="Mon Jun 15 09:19:09 2020 UTC",
            disconnect_reason=DOWN_REASON,
        )
    ]
    assert up == [
        PeerTunnel(
            peer="10.10.17.202",
            ip="10.10.17.202",
            channel_a=True,
            channel_b=True,
            registration="Completed",
            started="Wed Jun 10 14:27:12 2020 UTC",
            heartbeat_sent="Mon Jun 15 09:02:08 2020 UTC",
            heartbeat_received="Mon Jun 15 09:02:16 2020 UTC",
        )
    ]
    assert (down[0].connected, up[0].connected) == (False, True)


def test_brief_lab_output() -> None:
    up = parse_tunnel_status_brief(_lab("ftd_clish_status_brief_up.txt"))
    down = parse_tunnel_status_brief(_lab("ftd_clish_status_brief_down.txt"))
    fmcs = [_lab_device("fmc-primary")[1], _lab_device("fmc-secondary")[1]]

    assert [(p.peer, p.connected, p.heartbeat_received) for p in up] == [
        (ip, True, f"{LAB_TIME} UTC") for ip in fmcs
    ]
    assert [(p.peer, p.connected, p.disconnect_reason) for p in down] == [
        (ip, False, DOWN_REASON) for ip in fmcs
    ]


def test_brief_refuses_what_is_not_brief_output() -> None:
    with pytest.raises(ParseError, match=r"line 2: expected sftunnel-status-brief output") as caught:
        parse_tunnel_status_brief("> sftunnel-status-brief\n% Invalid input detected at '^' marker.\n")
    assert "Invalid input" not in str(caught.value)
    with pytest.raises(ParseError, match="line 1"):
        parse_tunnel_status_brief(_facts("synthesized_full_status.txt"))
    assert parse_tunnel_status_brief("") == []
    assert parse_tunnel_status_brief("> sftunnel-status-brief\n") == []


# ---------------------------------------------------------------- generate_certs.pl


def _failed(name: str, fmc_uuid: str) -> list[FailedPushLine]:
    files = ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")
    return [FailedPushLine(name, f"/var/sf/peers/{fmc_uuid}/{file}") for file in files]


def test_generate_certs_cisco_run() -> None:
    assert parse_generate_certs(_facts("generate_certs_run.txt")) == RegenOutput(
        days_left=3646,
        ca_not_after="Oct 9 10:12:50 2034 GMT",
        ca_not_after_utc=datetime(2034, 10, 9, 10, 12, 50, tzinfo=UTC),
        failed=(*_failed("BSNS-1120-1", FMC_UUID), *_failed("EMEA-FPR3110-08", FMC_UUID)),
        failed_push_path="/var/tmp/certs/1728915794/FAILED_PUSH",
        aborted=False,
    )


def test_generate_certs_lab_run() -> None:
    output = parse_generate_certs(_lab("generate_certs_run.txt"))
    fmc_uuid, _ = _lab_device("fmc-primary")

    assert output == RegenOutput(
        days_left=3648,
        ca_not_after="Nov 23 12:10:28 2036 GMT",
        ca_not_after_utc=datetime(2036, 11, 23, 12, 10, 28, tzinfo=UTC),
        failed=tuple(_failed("ftd-002", fmc_uuid)),
        failed_push_path="/var/tmp/certs/1795781429/FAILED_PUSH",
        aborted=False,
    )
    assert output.failed_devices == ("ftd-002",)


@pytest.mark.parametrize("read", [_facts, _lab], ids=["cisco", "lab"])
def test_the_run_output_and_its_failed_push_file_agree(read: Callable[[str], str]) -> None:
    """What the regenerate step relies on: the file lists exactly the pushes the output reported."""
    output = parse_generate_certs(read("generate_certs_run.txt"))
    entries = parse_failed_push(read("FAILED_PUSH"))
    assert [(line.name, line.path) for line in output.failed] == [(e.name, e.destination) for e in entries]
    assert output.failed_push_path is not None
    assert output.failed_push_path.endswith("/FAILED_PUSH")


def test_generate_certs_aborted_and_all_pushed_runs() -> None:
    aborted = parse_generate_certs(f"{GENERATE_INTRO}{CONTINUE}no\nAborted.\n")
    assert aborted == RegenOutput(None, None, None, (), None, aborted=True)

    expiry = "Current ca_root expires in -3 days - at Oct 8 10:12:50 2024 GMT"
    all_pushed = parse_generate_certs(
        f"{GENERATE_INTRO}{CONTINUE}yes\n\n{expiry}\n{CONTINUE}yes\n\nScalars leaked: 1\n"
    )
    assert all_pushed == RegenOutput(
        days_left=-3,
        ca_not_after="Oct 8 10:12:50 2024 GMT",
        ca_not_after_utc=datetime(2024, 10, 8, 10, 12, 50, tzinfo=UTC),
        failed=(),
        failed_push_path=None,
        aborted=False,
    )


def test_generate_certs_without_echo_and_with_spaces_in_names() -> None:
    """No pty: answers are not echoed, so output may follow a prompt on its line."""
    text = (
        f"{GENERATE_INTRO}{CONTINUE}\n"
        f"{CONTINUE}Current ca_root expires in 12 days - at Oct  9 10:12:50 2034 GMT\n"
        f"{CONTINUE}\nFailed to push to Branch Office FTD 7 = /var/sf/peers/{FMC_UUID}/cacert.pem\r\n"
    )
    output = parse_generate_certs(text)
    assert output.days_left == 12
    assert output.ca_not_after_utc == datetime(2034, 10, 9, 10, 12, 50, tzinfo=UTC)
    assert output.failed == (FailedPushLine("Branch Office FTD 7", f"/var/sf/peers/{FMC_UUID}/cacert.pem"),)


def test_generate_certs_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ParseError, match=r"expected generate_certs\.pl output"):
        parse_generate_certs("bash: generate_certs.pl: command not found\n")
    with pytest.raises(ParseError, match=r"line 3: expected 'Failed to push to <device> = <path>'") as caught:
        parse_generate_certs(f"{CONTINUE}yes\n\nFailed to push to BSNS-1120-1\n")
    assert "BSNS" not in str(caught.value)


# ---------------------------------------------------------------- FAILED_PUSH


def test_failed_push_cisco_file() -> None:
    entries = parse_failed_push(_facts("FAILED_PUSH"))

    assert [(e.uuid, e.name, e.ip, e.file_name) for e in entries] == [
        (uuid, name, ip, file)
        for uuid, name, ip in (
            (BSNS, "BSNS-1120-1", "10.48.67.54"),
            (EMEA, "EMEA-FPR3110-08", "10.48.189.37"),
        )
        for file in ("cacert.pem", "sftunnel-key.pem", "sftunnel-cert.pem")
    ]
    assert entries[1] == FailedPush(
        uuid=BSNS,
        name="BSNS-1120-1",
        ip="10.48.67.54",
        source=f"/var/sf/peers/{BSNS}/certs_pushed//sftunnel-key.pem",
        destination=f"/var/sf/peers/{FMC_UUID}/sftunnel-key.pem",
    )
    assert entries[1].source_normalized == f"/var/sf/peers/{BSNS}/certs_pushed/sftunnel-key.pem"
    assert entries[0].source == entries[0].source_normalized == "/etc/sf/ca_root/cacert.pem"
    assert {e.destination_normalized for e in entries} == {e.destination for e in entries}


def test_failed_push_lab_file() -> None:
    entries = parse_failed_push(_lab("FAILED_PUSH"))
    uuid, ip = _lab_device("ftd-002")
    fmc_uuid, _ = _lab_device("fmc-primary")

    assert [(e.uuid, e.name, e.ip) for e in entries] == [(uuid, "ftd-002", ip)] * 3
    assert [e.source for e in entries] == [
        "/etc/sf/ca_root/cacert.pem",
        f"/var/sf/peers/{uuid}/certs_pushed//sftunnel-key.pem",
        f"/var/sf/peers/{uuid}/certs_pushed//sftunnel-cert.pem",
    ]
    assert {e.destination.rsplit("/", 1)[0] for e in entries} == {f"/var/sf/peers/{fmc_uuid}"}


def test_failed_push_names_with_spaces_blank_lines_and_crlf() -> None:
    line = f"{BSNS} Branch  Office 7 10.0.0.7 /etc/sf/ca_root/cacert.pem /var/sf/peers/{FMC_UUID}/cacert.pem"
    text = f"\r\n{line}\r\n\n"
    (entry,) = parse_failed_push(text)
    assert (entry.name, entry.ip, entry.destination) == (
        "Branch  Office 7",
        "10.0.0.7",
        f"/var/sf/peers/{FMC_UUID}/cacert.pem",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"{BSNS} 10.0.0.7 /a /b", "found 4 fields"),
        ("not-a-uuid name 10.0.0.7 /a /b", "not a UUID"),
        (f"{BSNS} name 10.0.0.7 relative/a /b", "two absolute paths"),
        (f"{BSNS} name /x /a /b", "two absolute paths"),
    ],
)
def test_a_malformed_failed_push_line_is_named_by_number(line: str, message: str) -> None:
    good = _facts("FAILED_PUSH").splitlines()[0]
    with pytest.raises(ParseError, match=rf"line 3: expected .*{message}") as caught:
        parse_failed_push(f"{good}\n\n{line}\n{good}\n")
    assert "10.0.0.7" not in str(caught.value)


def test_a_terminal_transcript_is_not_a_failed_push_file() -> None:
    """Reading the file over a pty without stripping the echoed `cat` line must fail, not invent a device."""
    with pytest.raises(ParseError, match="line 1"):
        parse_failed_push(_facts("failed_push_transcript.txt"))


# ---------------------------------------------------------------- ims.conf, dates


def test_ims_conf_lab_file() -> None:
    assert dict(parse_ims_conf(_lab("fmc_ims.conf"))) == {
        "APPLIANCE_UUID": _lab_device("fmc-primary")[0],
        "HOSTNAME": "fmc-primary",
        "MODEL": "Secure Firewall Management Center for VMware (66)",
        "SWBUILD": "78",
        "SWVERSION": "7.2.9",
    }


def test_ims_conf_quotes_comments_and_odd_lines() -> None:
    text = "# comment\n\nA=1\nB='two words'\nC=\"x=y\"\nD='unmatched\"\nnot a pair\n=nokey\nA=again\r\n"
    conf = parse_ims_conf(text)
    assert dict(conf) == {"A": "again", "B": "two words", "C": "x=y", "D": "'unmatched\""}
    with pytest.raises(TypeError):
        conf["A"] = "x"  # type: ignore[index]  # read-only


def test_dates() -> None:
    ends = datetime(2034, 10, 5, 12, 16, 56, tzinfo=UTC)
    assert parse_openssl_enddate("notAfter=Oct  5 12:16:56 2034 GMT\n") == ends
    assert parse_openssl_enddate(_lab("fmc_cacert_enddate.txt")) == datetime(
        2036, 11, 23, 12, 10, 28, tzinfo=UTC
    )
    assert gmt_date_utc("Oct 5 12:16:56 2034 GMT") == ends
    assert ctime_utc("Mon Oct 14 12:42:10 2024 UTC") == datetime(2024, 10, 14, 12, 42, 10, tzinfo=UTC)
    assert ctime_utc("Tue Oct 11 21:44:44 2016") == datetime(2016, 10, 11, 21, 44, 44, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [
        "notBefore=Oct  7 12:16:56 2024 GMT",
        "notAfter=Okt  5 12:16:56 2034 GMT",
        "notAfter=Feb 30 00:00:00 2034 GMT",
        "",
    ],
)
def test_bad_dates_are_parse_errors(bad: str) -> None:
    with pytest.raises(ParseError, match=re.escape("expected")):
        parse_openssl_enddate(bad)
