"""sftunnel_status.pl text, golden against the synthesized layout of device-facts 2.4 (pure, no lab)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sftlab.tools.status_text import DOWN_REASON, FTD_SCRIPT, PeerState, ctime, render_status

DATA = Path(__file__).parent / "data"
FMC_IP = "10.48.79.232"
UP_UUID = "c8d5d5c6-87c9-11ef-a993-b9831565bc4e"
DOWN_UUID = "6bf1143a-8a2e-11ef-92d8-fd927e807d77"


def _at(hour: int, minute: int, second: int, day: int = 14) -> datetime:
    return datetime(2024, 10, day, hour, minute, second, tzinfo=UTC)


UP = PeerState(
    peer_uuid=UP_UUID,
    peer_name="BSNS-1120-1",
    peer_ip="10.48.67.54",
    local_ip=FMC_IP,
    connected=True,
    cipher="AES256-GCM-SHA384",
    bits=256,
    start_time_utc=_at(12, 42, 10),
    last_attempt_utc=_at(12, 42, 9),
    last_disconnect_utc=None,
    last_disconnect_reason=None,
    heartbeat_sent_utc=_at(14, 21, 2),
    heartbeat_received_utc=_at(14, 21, 10),
    peer_sw_version="7.2.5",
    peer_sw_build="208",
)
DOWN = PeerState(
    peer_uuid=DOWN_UUID,
    peer_name="EMEA-FPR3110-08",
    peer_ip="10.48.189.37",
    local_ip=FMC_IP,
    connected=False,
    cipher=None,
    bits=0,
    start_time_utc=None,
    last_attempt_utc=_at(14, 19, 51),
    last_disconnect_utc=_at(13, 55, 24),
    last_disconnect_reason=DOWN_REASON,
    heartbeat_sent_utc=None,
    heartbeat_received_utc=None,
    peer_sw_version="7.2.5",
    peer_sw_build="208",
)
START = _at(12, 40, 4)


def _render(states: list[PeerState], peer_filter: str | None = None) -> tuple[str, str, int]:
    return render_status(device_ip=FMC_IP, start_time_utc=START, states=states, peer_filter=peer_filter)


def test_fmc_status_matches_the_golden_layout() -> None:
    stdout, stderr, code = _render([UP, DOWN])
    assert stdout == (DATA / "sftunnel_status_fmc.golden").read_text()
    assert code == 0
    assert stderr == (
        f"{DOWN_UUID} did not reply at /usr/local/sf/bin/sftunnel_status.pl line 309.\n"
        "Retry rpc status poll at /usr/local/sf/bin/sftunnel_status.pl line 315.\n"
    )


def test_run_status_blocks_are_the_2_4_sample_verbatim() -> None:
    """Everything up to the RPC blocks is device-facts 2.4's synthesized block (TAB-indented)."""
    stdout, _, _ = _render([UP, DOWN])
    run_part = stdout.split("**RPC STATUS**", 1)[0]
    assert run_part.splitlines()[10:12] == [
        "**RUN STATUS****10.48.67.54*************",
        "\tCipher used = AES256-GCM-SHA384 (strength:256 bits)",
    ]
    assert (
        "\t\tPeer channel Channel-B is valid type (EVENT), using 'eth0', connected to '10.48.67.54' via"
        in run_part
    )
    down_block = run_part.split("**RUN STATUS****10.48.189.37*************\n", 1)[1]
    assert "Connected: Yes" not in down_block
    assert "Heartbeat" not in down_block


def test_peer_filter_by_ip_prints_one_peer_and_warns_on_stderr() -> None:
    stdout, stderr, code = _render([UP, DOWN], peer_filter="10.48.67.54")
    assert code == 0
    assert stderr == "Check peer 10.48.67.54 at /usr/local/sf/bin/sftunnel_status.pl line 39.\n"
    assert stdout.count("**RUN STATUS****") == 1
    assert "**RPC STATUS****10.48.67.54*************" in stdout
    assert "10.48.189.37" not in stdout


def test_peer_filter_by_uuid_on_an_ftd_uses_the_ngfw_script_path() -> None:
    stdout, stderr, code = render_status(
        device_ip="10.48.67.54",
        start_time_utc=START,
        states=[DOWN],
        peer_filter=DOWN_UUID,
        script_path=FTD_SCRIPT,
    )
    assert code == 0
    assert (
        stderr.splitlines()[0]
        == f"Check peer {DOWN_UUID} at /ngfw/usr/local/sf/bin/sftunnel_status.pl line 39."
    )
    assert "RPC status :Failed" in stdout


def test_unknown_peer_prints_nothing_and_fails() -> None:
    assert _render([UP, DOWN], peer_filter="192.0.2.1") == (
        "",
        "Unknown peer 192.0.2.1 at /usr/local/sf/bin/sftunnel_status.pl line 39.\n",
        1,
    )


def test_fmc_peer_reports_eth0_and_never_attempted_peer_has_no_dates() -> None:
    ha = replace(UP, peer_kind="fmc", peer_ip="10.48.79.233")
    fresh = replace(DOWN, last_attempt_utc=None, last_disconnect_utc=None, last_disconnect_reason=None)
    stdout, _, _ = _render([ha, fresh])
    assert "\t\teth0 (control events) 10.48.79.233," in stdout
    fresh_block = stdout.split("**RUN STATUS****10.48.189.37*************\n", 1)[1].split("***", 1)[0]
    assert fresh_block == "\tRegistration: Completed.\n"


def test_ctime_pads_the_day_with_a_space() -> None:
    assert ctime(datetime(2024, 10, 7, 12, 16, 56, tzinfo=UTC)) == "Mon Oct  7 12:16:56 2024"
    assert ctime(datetime(2020, 6, 15, 9, 21, 57, tzinfo=UTC)) == "Mon Jun 15 09:21:57 2020"
