"""What `sftunnel_status.pl` prints, rendered from tunnel states (pure: no I/O, no clock).

The layout is the synthesized one of device-facts 2.4 (ASSUMED there, built from the verbatim fragments of
2.2): a header, one RUN STATUS block per peer (connected and down variants per 2.3), then one RPC STATUS block
per peer (Data::Dumper style, 2.3). Lines under a RUN STATUS header are indented with one TAB, those under
`PEER INFO:` with two, as the real script does (ASSUMED in 2.2).

Our choices where the sources are silent (device-facts 11.4):
- `Broadcast count` is the number of peers listed plus one (2.4 shows 3 with two peers).
- The local management interface is `eth0`; a peer's is `management0` for an FTD and `eth0` for an FMC.
- A down peer's RPC block is its header and `RPC status :Failed` only (the verbatim T225502 sample); the real
  script also warns `<uuid> did not reply at <script> line 309.` / `Retry rpc status poll at <script> line
  315.`, which we put on stderr.
- A peer argument that matches no peer (by IP or UUID) prints nothing on stdout, `Unknown peer <arg> at
  <script> line 39.` on stderr, and exits 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

FMC_SCRIPT = "/usr/local/sf/bin/sftunnel_status.pl"
FTD_SCRIPT = "/ngfw/usr/local/sf/bin/sftunnel_status.pl"
DOWN_REASON = "Both control and event channel connections with peer went down"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_RUN_END = "***********************"
_LOCAL_INTERFACE = "eth0"


@dataclass(frozen=True)
class PeerState:
    """One tunnel as one of its ends sees it; `peer_*` describe the other end.

    `peer_sw_version`/`peer_sw_build` come from the other end's hello once connected, else from the peer
    record on disk. `peer_kind` ("fmc" or "ftd") only picks the peer's interface name in the status text.
    """

    peer_uuid: str
    peer_name: str
    peer_ip: str
    local_ip: str
    connected: bool
    cipher: str | None
    bits: int
    start_time_utc: datetime | None
    last_attempt_utc: datetime | None
    last_disconnect_utc: datetime | None
    last_disconnect_reason: str | None
    heartbeat_sent_utc: datetime | None
    heartbeat_received_utc: datetime | None
    peer_sw_version: str
    peer_sw_build: str
    peer_kind: str = "ftd"


def ctime(when_utc: datetime) -> str:
    """C `ctime` style, `Www Mmm dd HH:MM:SS yyyy`, day padded with a space; English names in any locale."""
    return (
        f"{_DAYS[when_utc.weekday()]} {_MONTHS[when_utc.month - 1]} {when_utc.day:2d} "
        f"{when_utc:%H:%M:%S} {when_utc.year}"
    )


def render_status(
    *,
    device_ip: str,
    start_time_utc: datetime,
    states: Sequence[PeerState],
    peer_filter: str | None,
    script_path: str = FMC_SCRIPT,
) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of `sftunnel_status.pl [peer_filter]` on the device at `device_ip`."""
    stderr = ""
    shown = list(states)
    if peer_filter is not None:
        shown = [s for s in states if peer_filter in (s.peer_ip, s.peer_uuid)]
        if not shown:
            return "", f"Unknown peer {peer_filter} at {script_path} line 39.\n", 1
        stderr = f"Check peer {peer_filter} at {script_path} line 39.\n"
    lines = _header(device_ip, start_time_utc, len(shown))
    for state in shown:
        lines += _run_status(state)
    for state in shown:
        lines += _rpc_status(state)
        if not state.connected:
            stderr += (
                f"{state.peer_uuid} did not reply at {script_path} line 309.\n"
                f"Retry rpc status poll at {script_path} line 315.\n"
            )
    return "".join(line + "\n" for line in lines), stderr, 0


def _header(device_ip: str, start_time_utc: datetime, peers: int) -> list[str]:
    return [
        f"SFTUNNEL Start Time: {ctime(start_time_utc)}",
        "",
        "\tBoth IPv4 and IPv6 connectivity is supported",
        f"\tBroadcast count = {peers + 1}",
        "\tReserved SSL connections: 0",
        "\tManagement Interfaces: 1",
        f"\t{_LOCAL_INTERFACE} (control events) {device_ip},",
        "",
        "****************",
        "",
    ]


def _run_status(state: PeerState) -> list[str]:
    body = _connected_body(state) if state.connected else _down_body(state)
    return [f"**RUN STATUS****{state.peer_ip}*************", *body, _RUN_END, ""]


def _connected_body(state: PeerState) -> list[str]:
    cipher = f"\tCipher used = {state.cipher} (strength:{state.bits} bits)"
    peer_if = "eth0" if state.peer_kind == "fmc" else "management0"
    via = f"connected to '{state.peer_ip}' via '{state.local_ip}'"
    lines = [
        cipher,
        f"\tChannelA Connected: Yes, Interface {_LOCAL_INTERFACE}",
        cipher,
        f"\tChannelB Connected: Yes, Interface {_LOCAL_INTERFACE}",
        "\tRegistration: Completed.",
    ]
    if state.start_time_utc is not None:
        lines.append(
            f"\tIPv4 Connection to peer '{state.peer_ip}' Start Time: {ctime(state.start_time_utc)} UTC"
        )
    lines += [
        "\tPEER INFO:",
        f"\t\tsw_version {state.peer_sw_version}",
        f"\t\tsw_build {state.peer_sw_build}",
        "\t\tManagement Interfaces: 1",
        f"\t\t{peer_if} (control events) {state.peer_ip},",
        f"\t\tPeer channel Channel-A is valid type (CONTROL), using '{_LOCAL_INTERFACE}', {via}",
        f"\t\tPeer channel Channel-B is valid type (EVENT), using '{_LOCAL_INTERFACE}', {via}",
    ]
    if state.heartbeat_sent_utc is not None:
        lines.append(f"\tHeartbeat Send Time: {ctime(state.heartbeat_sent_utc)} UTC")
    if state.heartbeat_received_utc is not None:
        lines.append(f"\tHeartbeat Received Time: {ctime(state.heartbeat_received_utc)} UTC")
    return lines


def _down_body(state: PeerState) -> list[str]:
    """The CDO rule: no channel, peer-channel or heartbeat lines; the last attempt and disconnect instead."""
    lines = ["\tRegistration: Completed."]
    if state.last_attempt_utc is not None:
        lines.append(
            f"\tConnection to peer '{state.peer_ip}' Attempted at {ctime(state.last_attempt_utc)} UTC"
        )
    if state.last_disconnect_utc is not None:
        lines.append(f"\tLast disconnect time : {ctime(state.last_disconnect_utc)} UTC")
        lines.append(f"\tLast disconnect reason : {state.last_disconnect_reason or DOWN_REASON}")
    return lines


def _rpc_status(state: PeerState) -> list[str]:
    header = f"**RPC STATUS****{state.peer_ip}*************"
    if not state.connected:
        return [header, "RPC status :Failed"]
    changed = ctime(state.start_time_utc) if state.start_time_utc is not None else ""
    return [
        header,
        f"'uuid' => '{state.peer_uuid}',",
        "'uuid_gw' => '',",
        f"'last_changed' => '{changed}',",
        "'active' => 1,",
        f"'name' => '{state.peer_ip}',",
        f"'ip' => '{state.peer_ip}',",
        "'ipv6' => 'IPv6 is not configured for management'",
        "RPC status :Succeeded",
    ]


def render_brief(states: Sequence[PeerState]) -> str:
    """CLISH `sftunnel-status-brief` (device-facts 2.2, CDO): one unindented `PEER:` block per peer."""
    lines: list[str] = []
    for state in states:
        lines.append(f"PEER:{state.peer_ip}")
        if state.connected:
            via = f"connected to '{state.peer_ip}' via '{state.local_ip}'"
            lines += [
                f"Peer channel Channel-A is valid type (CONTROL), using '{_LOCAL_INTERFACE}', {via}",
                f"Peer channel Channel-B is valid type (EVENT), using '{_LOCAL_INTERFACE}', {via}",
                "Registration: Completed.",
            ]
            if state.start_time_utc is not None:
                started = ctime(state.start_time_utc)
                lines.append(f"IPv4 Connection to peer '{state.peer_ip}' Start Time: {started} UTC")
            if state.heartbeat_sent_utc is not None:
                lines.append(f"Heartbeat Send Time: {ctime(state.heartbeat_sent_utc)} UTC")
            if state.heartbeat_received_utc is not None:
                lines.append(f"Heartbeat Received Time: {ctime(state.heartbeat_received_utc)} UTC")
        else:
            lines += [line.lstrip("\t") for line in _down_body(state)]
    return "".join(line + "\n" for line in lines)
