"""`sftunnel_status.pl` (FMC or FTD, full form) and CLISH `sftunnel-status-brief` (device-facts 2.2, 2.3).

Blocks are recognised by their headers and lines by their words, never by indentation; everything of one
peer (RUN STATUS, RPC STATUS, a retried RPC) folds into one `PeerTunnel`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from pipeline.parsing.text import ParseError, stripped_lines


@dataclass(frozen=True)
class PeerTunnel:
    """One peer's tunnel as a RUN STATUS / RPC STATUS (or brief `PEER:`) block describes it.

    `peer` is the block header's value (an IP or a name); `ip` the address the block states; `uuid` comes
    from the RPC STATUS block, when there is one. Dates are kept as printed (see `dates.ctime_utc`).
    `registration` is the text after `Registration:` without its final period (`Completed`).
    """

    peer: str
    ip: str | None = None
    uuid: str | None = None
    channel_a: bool = False
    channel_b: bool = False
    registration: str | None = None
    cipher: str | None = None
    started: str | None = None
    last_attempt: str | None = None
    last_disconnect: str | None = None
    disconnect_reason: str | None = None
    heartbeat_sent: str | None = None
    heartbeat_received: str | None = None
    sw_version: str | None = None
    sw_build: str | None = None
    rpc_ok: bool | None = None

    @property
    def connected(self) -> bool:
        """Both channels up: the ASSUMED rule of device-facts 2.3 (a half-up peer is not connected)."""
        return self.channel_a and self.channel_b


@dataclass(frozen=True)
class TunnelStatusReport:
    """`sftunnel_status.pl`: the header, one `PeerTunnel` per peer (in order of appearance), and the
    Perl warnings found in the text (`... at <script> line N.`); `requested_peer` is the argument that the
    `Check peer <arg> at ...` warning names. `management_ips` are the device's own, from the interface
    lines between `SFTUNNEL Start Time:` and the first block (never a peer's PEER INFO)."""

    start_time: str | None
    management_ips: tuple[str, ...]
    peers: tuple[PeerTunnel, ...]
    requested_peer: str | None
    warnings: tuple[str, ...]

    def peer(self, ip_or_uuid: str) -> PeerTunnel | None:
        """The peer whose header, IP or UUID (any case) is `ip_or_uuid`; None when none is."""
        wanted = ip_or_uuid.strip().lower()
        for tunnel in self.peers:
            if wanted in {tunnel.peer.lower(), (tunnel.ip or "").lower(), (tunnel.uuid or "").lower()}:
                return tunnel
        return None


_RUN_HEADER = re.compile(r"\*\*RUN STATUS\*\*\*\*(?P<v>[^*\s]+)\*+")
_RPC_HEADER = re.compile(r"\*\*RPC STATUS\*\*\*\*(?P<v>[^*\s]+)\*+")
_BRIEF_HEADER = re.compile(r"PEER:\s*(?P<v>\S+)")
_SEPARATOR = re.compile(r"\*{3,}")
_WARNING = re.compile(r".+ at \S+ line \d+\.")
_CHECK_PEER = re.compile(r"Check peer (?P<v>\S+) at \S+ line \d+\.")
_START_TIME = re.compile(r"SFTUNNEL Start Time:\s*(?P<v>.+)")
_INTERFACE = re.compile(r"\S+ \(control events\) (?P<v>.+)")
_CHANNEL = re.compile(r"Channel(?P<ch>[AB]) Connected:\s*(?P<v>Yes|No)\b.*")
_PEER_CHANNEL = re.compile(
    r"Peer channel Channel-(?P<ch>[AB]) is valid type .*\bconnected to '(?P<ip>[^']+)'.*"
)
_RPC_FIELD = re.compile(r"'(?P<k>\w+)' => (?:'(?P<v>[^']*)'|(?P<n>[^,']*)),?")
_RPC_RESULT = re.compile(r"RPC status\s*:\s*(?P<v>\w+)")
_PROMPT_ECHO = re.compile(r"(?:>|\S+@\S+:.*[#$])(?: .*)?")
# Lines whose value goes straight into a PeerTunnel field; `ip` named groups also give the peer's address.
_FIELDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Cipher used = (?P<v>\S+).*"), "cipher"),
    (re.compile(r"Registration:\s*(?P<v>.+?)\.?"), "registration"),
    (re.compile(r"(?:IPv[46] )?Connection to peer '(?P<ip>[^']+)' Start Time:\s*(?P<v>.+)"), "started"),
    (re.compile(r"(?:IPv[46] )?Connection to peer '(?P<ip>[^']+)' Attempted at\s*(?P<v>.+)"), "last_attempt"),
    (re.compile(r"Last disconnect time\s*:\s*(?P<v>.+)"), "last_disconnect"),
    (re.compile(r"Last disconnect reason\s*:\s*(?P<v>.+)"), "disconnect_reason"),
    (re.compile(r"Heartbeat Send Time:\s*(?P<v>.+)"), "heartbeat_sent"),
    (re.compile(r"Heartbeat Received Time:\s*(?P<v>.+)"), "heartbeat_received"),
    (re.compile(r"sw_version\s+(?P<v>\S+)"), "sw_version"),
    (re.compile(r"sw_build\s+(?P<v>\S+)"), "sw_build"),
)


@dataclass
class _Draft:
    """A peer being read; blocks for one peer (RUN, RPC, a retried RPC) all fold into one draft."""

    peer: str
    values: dict[str, str] = field(default_factory=dict)
    channels: dict[str, bool] = field(default_factory=dict)
    peer_channels: set[str] = field(default_factory=set)
    rpc: dict[str, str] = field(default_factory=dict)
    rpc_ok: bool | None = None

    def feed(self, line: str) -> bool:
        """Take one stripped line of this peer's block; False when the line ends an RPC block."""
        if match := _CHANNEL.fullmatch(line):
            self.channels[match["ch"]] = match["v"] == "Yes"
        elif match := _PEER_CHANNEL.fullmatch(line):
            self.peer_channels.add(match["ch"])
            self.values.setdefault("ip", match["ip"])
        elif match := _RPC_FIELD.fullmatch(line):
            self.rpc[match["k"]] = match["v"] if match["v"] is not None else match["n"].strip()
        elif match := _RPC_RESULT.fullmatch(line):
            self.rpc_ok = match["v"].lower() == "succeeded"
            return False
        else:
            for pattern, name in _FIELDS:
                if match := pattern.fullmatch(line):
                    self.values[name] = match["v"].strip()
                    if "ip" in pattern.groupindex:
                        self.values["ip"] = match["ip"]
                    break
        return True

    def freeze(self) -> PeerTunnel:
        """An explicit `ChannelX Connected:` line wins; else a `Peer channel ... connected to` line counts."""
        v = self.values
        return PeerTunnel(
            peer=self.peer,
            ip=v.get("ip") or self.rpc.get("ip") or (self.peer if _is_ip(self.peer) else None),
            uuid=self.rpc.get("uuid") or None,
            channel_a=self.channels.get("A", "A" in self.peer_channels),
            channel_b=self.channels.get("B", "B" in self.peer_channels),
            registration=v.get("registration"),
            cipher=v.get("cipher"),
            started=v.get("started"),
            last_attempt=v.get("last_attempt"),
            last_disconnect=v.get("last_disconnect"),
            disconnect_reason=v.get("disconnect_reason"),
            heartbeat_sent=v.get("heartbeat_sent"),
            heartbeat_received=v.get("heartbeat_received"),
            sw_version=v.get("sw_version"),
            sw_build=v.get("sw_build"),
            rpc_ok=self.rpc_ok,
        )


def parse_tunnel_status(text: str) -> TunnelStatusReport:
    """Read `sftunnel_status.pl [peer]` (FMC or FTD) or CLISH `sftunnel-status`, full form.

    Tolerates merged stderr (Perl warnings anywhere), RPC blocks without RUN STATUS (`RPC status :Failed`
    only), repeated RPC blocks (the last result wins) and truncated output. Raises `ParseError` when the text
    holds none of the script's landmarks (a start time, a RUN/RPC STATUS block, a `Check peer` warning).
    """
    drafts: dict[str, _Draft] = {}
    current: _Draft | None = None
    start_time: str | None = None
    management_ips: list[str] = []
    warnings: list[str] = []
    for line in stripped_lines(text):
        if header := _RUN_HEADER.fullmatch(line) or _RPC_HEADER.fullmatch(line):
            current = drafts.setdefault(header["v"], _Draft(header["v"]))
        elif _SEPARATOR.fullmatch(line):
            current = None
        elif _WARNING.fullmatch(line):
            warnings.append(line)
        elif current is not None:
            current = current if current.feed(line) else None
        elif match := _START_TIME.fullmatch(line):
            start_time = match["v"]
        elif (match := _INTERFACE.fullmatch(line)) and start_time is not None and not drafts:
            management_ips += [ip.strip() for ip in match["v"].split(",") if ip.strip()]
    requested = next((m["v"] for w in warnings if (m := _CHECK_PEER.fullmatch(w))), None)
    if start_time is None and not drafts and requested is None:
        raise ParseError(
            "expected sftunnel_status.pl output: a 'SFTUNNEL Start Time:' line or "
            "'**RUN STATUS****<peer>****' / '**RPC STATUS****<peer>****' blocks; found none"
        )
    return TunnelStatusReport(
        start_time=start_time,
        management_ips=tuple(management_ips),
        peers=tuple(draft.freeze() for draft in drafts.values()),
        requested_peer=requested,
        warnings=tuple(warnings),
    )


def parse_tunnel_status_brief(text: str) -> list[PeerTunnel]:
    """Read FTD CLISH `sftunnel-status-brief`: one `PEER:<ip>` block per manager (device-facts 2.2, CDO).

    Lines before the first block may only be prompts or Perl warnings; anything else (`% Invalid input`,
    the full form by mistake) is a `ParseError` naming its line. No blocks at all means no peers.
    """
    drafts: dict[str, _Draft] = {}
    current: _Draft | None = None
    for number, line in enumerate(stripped_lines(text), start=1):
        if header := _BRIEF_HEADER.fullmatch(line):
            current = drafts.setdefault(header["v"], _Draft(header["v"]))
        elif current is not None:
            current.feed(line)
        elif line and not _PROMPT_ECHO.fullmatch(line) and not _WARNING.fullmatch(line):
            raise ParseError(f"line {number}: expected sftunnel-status-brief output ('PEER:<ip>' blocks)")
    return [draft.freeze() for draft in drafts.values()]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
