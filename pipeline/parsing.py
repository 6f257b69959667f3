"""Readers for what the Cisco tools print: sftunnel_status.pl, generate_certs.pl, FAILED_PUSH, ims.conf.

Pure (STYLE lesson 1): text in, frozen facts out. Lines are recognised by their words, never by their
indentation (tabs, spaces or none: device-facts 2.2 and 2.3), so a pty transcript with stderr merged in,
prompts and echoed answers still parses. Text that is not the expected tool's output at all raises
`ParseError` (a `ValueError`) naming what was expected and, where it applies, the 1-based line number;
messages never repeat the input.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType


class ParseError(ValueError):
    """Tool output that cannot be what the caller asked us to read."""


@dataclass(frozen=True)
class PeerTunnel:
    """One peer's tunnel as a RUN STATUS / RPC STATUS (or brief `PEER:`) block describes it.

    `peer` is the block header's value (an IP or a name); `ip` the address the block states; `uuid` comes
    from the RPC STATUS block, when there is one. Dates are kept as printed (see `ctime_utc`).
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


@dataclass(frozen=True)
class FailedPushLine:
    """`Failed to push to <name> = <destination path on the FTD>` (device-facts 3.2)."""

    name: str
    path: str


@dataclass(frozen=True)
class RegenOutput:
    """What a `generate_certs.pl` run said: the old CA's expiry, failed pushes, and whether it aborted."""

    days_left: int | None
    ca_not_after: str | None
    ca_not_after_utc: datetime | None
    failed: tuple[FailedPushLine, ...]
    failed_push_path: str | None
    aborted: bool

    @property
    def failed_devices(self) -> tuple[str, ...]:
        """Device names with at least one failed push, in order of first mention."""
        return tuple(dict.fromkeys(line.name for line in self.failed))


@dataclass(frozen=True)
class FailedPush:
    """One FAILED_PUSH line: `FTD_UUID FTD_NAME FTD_IP SOURCE DEST`, paths byte for byte (3.3)."""

    uuid: str
    name: str
    ip: str
    source: str
    destination: str

    @property
    def source_normalized(self) -> str:
        """The source path with `certs_pushed//x` folded to `certs_pushed/x` (posixpath.normpath)."""
        return posixpath.normpath(self.source)

    @property
    def destination_normalized(self) -> str:
        return posixpath.normpath(self.destination)

    @property
    def file_name(self) -> str:
        """`cacert.pem`, `sftunnel-key.pem` or `sftunnel-cert.pem`."""
        return posixpath.basename(self.destination)


# ------------------------------------------------------------------ sftunnel_status.pl

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
    for line in _stripped_lines(text):
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
    for number, line in enumerate(_stripped_lines(text), start=1):
        if header := _BRIEF_HEADER.fullmatch(line):
            current = drafts.setdefault(header["v"], _Draft(header["v"]))
        elif current is not None:
            current.feed(line)
        elif line and not _PROMPT_ECHO.fullmatch(line) and not _WARNING.fullmatch(line):
            raise ParseError(f"line {number}: expected sftunnel-status-brief output ('PEER:<ip>' blocks)")
    return [draft.freeze() for draft in drafts.values()]


def ctime_utc(text: str) -> datetime:
    """A date as sftunnel_status.pl prints it (`Mon Oct 14 12:42:10 2024`, optional ` UTC`), as UTC."""
    return _parse_date(text, expected="a ctime date like 'Mon Oct 14 12:42:10 2024 UTC'")


# ------------------------------------------------------------------ generate_certs.pl, FAILED_PUSH

_EXPIRY = re.compile(r"Current ca_root expires in (?P<days>-?\d+) days - at (?P<date>.+?)\s*")
_FAILED = "Failed to push to "
_SUMMARY = re.compile(r"Some files were failed to be pushed to remote peers\..*\bcheck (?P<v>\S+)\s*")
_PROMPT = "Do you want to continue? [yes/no]:"
_LANDMARKS = ("You are about to generate new certificates", _PROMPT, _FAILED, "Current ca_root expires")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def parse_generate_certs(text: str) -> RegenOutput:
    """Read a `generate_certs.pl` run (device-facts 3.2): its output alone or a pty transcript.

    The banner, prompts, echoed answers and `Scalars leaked: N` are ignored. A `Failed to push to` line is
    split on its last ` = `, so device names may contain spaces. Raises `ParseError` when the text has none
    of the script's landmarks, or a failure line has no ` = <path>`.
    """
    if not any(mark in text for mark in (*_LANDMARKS, "Aborted.")):
        raise ParseError("expected generate_certs.pl output (its banner or 'Do you want to continue?')")
    days_left: int | None = None
    not_after: str | None = None
    failed: list[FailedPushLine] = []
    summary: str | None = None
    aborted = False
    for number, raw in enumerate(_stripped_lines(text), start=1):
        line = raw.rsplit(_PROMPT, 1)[-1].strip()
        if match := _EXPIRY.fullmatch(line):
            days_left, not_after = int(match["days"]), match["date"]
        elif line.startswith(_FAILED):
            name, sep, path = line.removeprefix(_FAILED).rpartition(" = ")
            if not sep or not name.strip() or not path.startswith("/"):
                raise ParseError(f"line {number}: expected 'Failed to push to <device> = <path>'")
            failed.append(FailedPushLine(name.strip(), path))
        elif match := _SUMMARY.fullmatch(line):
            summary = match["v"]
        elif line == "Aborted.":
            aborted = True
    return RegenOutput(
        days_left=days_left,
        ca_not_after=not_after,
        ca_not_after_utc=gmt_date_utc(not_after) if not_after is not None else None,
        failed=tuple(failed),
        failed_push_path=summary,
        aborted=aborted,
    )


def parse_failed_push(text: str) -> tuple[FailedPush, ...]:
    """Read a FAILED_PUSH file: `FTD_UUID FTD_NAME FTD_IP SOURCE DEST` per line (device-facts 3.3).

    The first field is the UUID, the last two the paths, the one before them the IP (or host name, as
    registered), and everything between UUID and IP the name, exactly as written (it may hold spaces).
    Blank lines are skipped; any other line that does not fit is a `ParseError` naming its line number.
    """
    entries: list[FailedPush] = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        entries.append(_failed_push_line(line, number))
    return tuple(entries)


def _failed_push_line(line: str, number: int) -> FailedPush:
    expected = f"line {number}: expected 'FTD_UUID FTD_NAME FTD_IP SOURCE_PATH DEST_PATH'"
    uuid, _, rest = line.partition(" ")
    head, *tail = rest.rsplit(" ", 3)
    if len(tail) != 3 or not head.strip():
        raise ParseError(f"{expected}; found {len(line.split())} fields")
    ip, source, destination = tail
    if not _UUID.fullmatch(uuid):
        raise ParseError(f"{expected}; the first field is not a UUID")
    if not (source.startswith("/") and destination.startswith("/")) or not ip or ip.startswith("/"):
        raise ParseError(f"{expected}; the last three fields must be an address and two absolute paths")
    return FailedPush(uuid=uuid, name=head, ip=ip, source=source, destination=destination)


# ------------------------------------------------------------------ ims.conf, openssl, dates


def parse_ims_conf(text: str) -> Mapping[str, str]:
    """`/etc/sf/ims.conf` as `KEY=VALUE` (device-facts 5.1): split on the first `=`, matching quotes stripped.

    Blank lines, `#` comments and lines without `=` are skipped: only some keys of the file are known, and
    we read keys from it rather than validate it. A repeated key keeps its last value, as a shell would.
    """
    values: dict[str, str] = {}
    for line in _stripped_lines(text):
        key, sep, value = line.partition("=")
        if not sep or line.startswith("#") or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return MappingProxyType(values)


def parse_openssl_enddate(line: str) -> datetime:
    """`notAfter=Oct  5 12:16:56 2034 GMT` (`openssl x509 -enddate -noout`) as an aware UTC datetime."""
    key, sep, value = line.strip().partition("=")
    if not sep or key != "notAfter":
        raise ParseError("expected 'notAfter=<Mmm dd HH:MM:SS yyyy> GMT' from openssl x509 -enddate")
    return gmt_date_utc(value)


def gmt_date_utc(text: str) -> datetime:
    """`Oct 9 10:12:50 2034 GMT` (generate_certs.pl) or `Oct  9 ...` (openssl) as an aware UTC datetime."""
    return _parse_date(text, expected="a date like 'Oct 9 10:12:50 2034 GMT'")


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE = re.compile(
    r"(?:[A-Z][a-z]{2} +)?(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) +"
    r"(?P<time>\d\d:\d\d:\d\d) +(?P<year>\d{4})(?: +(?:UTC|GMT))?"
)


def _parse_date(text: str, *, expected: str) -> datetime:
    """English month names whatever the locale (strptime's %b is not); the devices print UTC."""
    match = _DATE.fullmatch(text.strip())
    if match is None or match["mon"] not in _MONTHS:
        raise ParseError(f"expected {expected}")
    day = f"{int(match['day']):02d}"
    month = f"{_MONTHS.index(match['mon']) + 1:02d}"
    try:
        return datetime.fromisoformat(f"{match['year']}-{month}-{day}T{match['time']}+00:00")
    except ValueError:
        raise ParseError(f"expected {expected}; the date does not exist") from None


def _lines(text: str) -> list[str]:
    """Lines without their ending; a pty's CRLF counts as one ending."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _stripped_lines(text: str) -> Iterable[str]:
    return (line.strip() for line in _lines(text))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
