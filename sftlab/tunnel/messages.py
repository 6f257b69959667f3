"""sftunneld lines in a device's messages file (device-facts 7.2): the wording (pure) and the appender.

Line format (verbatim in 7.2):
`<Mmm dd HH:MM:SS> <hostname> SF-IMS[<pid>]: [<tid>] sftunneld:<module> [<LEVEL>] <message>`.
The failed-handshake lines of the connecting side are the ASSUMED completions given in 7.2; the listening
side's lines complete the truncated FMC sample of 7.2 the same way (ASSUMED). The reason a handshake failed is
always the real one: the verify code and message OpenSSL reported to whichever end verified.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509

from sftlab.fleet.pki import oneline_dn

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID and X509_V_ERR_CERT_HAS_EXPIRED: time errors, where the trust anchor
# (depth 1) is checked before the leaf, so an expired CA is reported at depth 1 (as on the devices in 7.2).
_TIME_ERRORS = (9, 10)
_SELF_SIGNED_IN_CHAIN = 19
_SSL_ERROR = "SSL_renegotiate error: 1: error:00000001:lib(0):func(0):reason(1)"


class Level(StrEnum):
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Entry:
    level: Level
    message: str
    module: str = "sf_ssl"


@dataclass(frozen=True)
class CertFailure:
    """The certificate a verifying end refused: OpenSSL's verify code and message; depth, issuer, subject."""

    code: int
    message: str
    depth: int
    issuer: str
    subject: str


@dataclass(frozen=True)
class AttemptFailure:
    """Why a tunnel attempt failed. `cert` is set when a certificate verification failed on either end.

    `stage` is "connect" (no TCP connection), "handshake" (TLS failed) or "rejected" (the owner refused a peer
    that completed the handshake, e.g. one without a peer folder).
    """

    stage: str
    reason: str
    cert: CertFailure | None = None


def locate_failure(
    code: int,
    message: str,
    *,
    chain: Sequence[x509.Certificate],
    anchor: x509.Certificate | None,
    now_utc: datetime,
) -> CertFailure:
    """Which certificate OpenSSL complained about, from the chain the other end presented (leaf first) and the
    verifier's own CA file.

    OpenSSL checks times from the top of the chain down, so an expired CA is reported at depth 1 (as on
    the devices in 7.2), an expired leaf at depth 0. A self-signed CA the verifier does not trust (19) is
    the top of the presented chain. Every other error is about the leaf (depth 0).
    """
    if not chain:
        return CertFailure(code, message, 0, "<unknown>", "<unknown>")
    if code in _TIME_ERRORS:
        built = [chain[0], anchor] if anchor is not None else list(chain)
        for depth in reversed(range(len(built))):
            if not _valid_at(built[depth], now_utc):
                return _at(code, message, depth, built[depth])
    if code == _SELF_SIGNED_IN_CHAIN:
        return _at(code, message, len(chain) - 1, chain[-1])
    return _at(code, message, 0, chain[0])


def _at(code: int, message: str, depth: int, cert: x509.Certificate) -> CertFailure:
    return CertFailure(code, message, depth, oneline_dn(cert.issuer), oneline_dn(cert.subject))


def _valid_at(cert: x509.Certificate, now_utc: datetime) -> bool:
    return cert.not_valid_before_utc <= now_utc <= cert.not_valid_after_utc


def syslog_time(when_utc: datetime) -> str:
    """`Mmm dd HH:MM:SS`, day padded with a space as syslog does (`Oct  9 10:12:50`)."""
    return f"{_MONTHS[when_utc.month - 1]} {when_utc.day:2d} {when_utc:%H:%M:%S}"


def daemon_ids(uuid: str) -> tuple[int, int]:
    """A stable (pid, tid) for a device's sftunneld, derived from its UUID so reruns log the same numbers."""
    digest = zlib.crc32(uuid.encode())
    pid = 1000 + digest % 60000
    return pid, pid + 1 + (digest >> 16) % 3000


def format_line(*, when_utc: datetime, hostname: str, pid: int, tid: int, entry: Entry) -> str:
    return (
        f"{syslog_time(when_utc)} {hostname} SF-IMS[{pid}]: [{tid}] "
        f"sftunneld:{entry.module} [{entry.level}] {entry.message}"
    )


def _connecting(owner_ip: str, port: int) -> list[Entry]:
    return [
        Entry(Level.INFO, f"Initiating IPv4 connection to {owner_ip}:{port}/tcp"),
        Entry(Level.INFO, f"Wait to connect to {port} (IPv6): {owner_ip}"),
    ]


def _connected(owner_ip: str, port: int) -> Entry:
    return Entry(Level.INFO, f"Connected to {owner_ip} from resolved_ip_list (port {port}) (IPv4)")


def _cert_lines(cert: CertFailure) -> list[Entry]:
    return [
        Entry(Level.ERROR, f"-Error with certificate at depth: {cert.depth}"),
        Entry(Level.ERROR, f"  issuer = {cert.issuer}"),
        Entry(Level.ERROR, f"  subject = {cert.subject}"),
        Entry(Level.ERROR, f"  err {cert.code}:{cert.message}"),
    ]


def peer_established(owner_ip: str, port: int, owner_uuid: str) -> list[Entry]:
    """The connecting end's lines for a tunnel that came up."""
    return [
        *_connecting(owner_ip, port),
        _connected(owner_ip, port),
        Entry(Level.INFO, f"Established connection to sftunnel for peer {owner_ip}"),
        Entry(Level.INFO, f"Peer {owner_uuid} is connected", module="sf_peers"),
    ]


def owner_established(peer_ip: str, peer_uuid: str) -> list[Entry]:
    """The listening end's lines for a tunnel that came up."""
    return [
        Entry(Level.INFO, f"Accepted IPv4 connection from {peer_ip}"),
        Entry(Level.INFO, f"Established connection to sftunnel for peer {peer_ip}"),
        Entry(Level.INFO, f"Peer {peer_uuid} is connected", module="sf_peers"),
    ]


def peer_failed(owner_ip: str, port: int, failure: AttemptFailure) -> list[Entry]:
    """The connecting end's lines for a failed attempt (7.2 completions when a certificate was refused)."""
    if failure.stage == "connect":
        return [
            *_connecting(owner_ip, port),
            Entry(Level.WARN, f"Connect:Unable to connect to {owner_ip} (port {port}): {failure.reason}"),
        ]
    lines = [*_connecting(owner_ip, port), _connected(owner_ip, port)]
    if failure.stage == "rejected":
        return [*lines, Entry(Level.ERROR, f"Connect:Connection closed by peer {owner_ip}: {failure.reason}")]
    if failure.cert is not None:
        lines += _cert_lines(failure.cert)
    lines += [Entry(Level.ERROR, _SSL_ERROR), Entry(Level.ERROR, "Connect:SSL handshake failed")]
    return [*lines, Entry(Level.WARN, f"SSL Verification status: {failure.reason}")]


def owner_failed(peer_ip: str, failure: AttemptFailure) -> list[Entry]:
    """The listening end's lines for a failed attempt (completing the truncated FMC sample of 7.2)."""
    if failure.stage == "rejected":
        return [
            Entry(Level.INFO, f"Accepted IPv4 connection from {peer_ip}"),
            Entry(Level.WARN, f"establishConnectionUtil: Rejected peer {peer_ip}: {failure.reason}"),
        ]
    lines = [Entry(Level.INFO, f"VERIFY ssl_verify_callback_info: peer {peer_ip}")]
    if failure.cert is not None:
        lines += _cert_lines(failure.cert)
    util = "establishConnectionUtil:"
    ssl_conn = "establishSSLConnection:"
    return [
        *lines,
        Entry(Level.ERROR, _SSL_ERROR),
        Entry(Level.WARN, f"{util} SSL handshake failed with peer {peer_ip}"),
        Entry(Level.WARN, f"{util} SSL Verification status: {failure.reason}"),
        Entry(Level.WARN, f"{util} SSL connection to {peer_ip} closed"),
        Entry(Level.INFO, f"{util} Failed to establish connection with peer {peer_ip}"),
        Entry(Level.ERROR, f"{ssl_conn} Unable to establish SSL connection with peer {peer_ip}"),
        Entry(Level.ERROR, f"{ssl_conn} ret_val = -1"),
        Entry(Level.ERROR, f"{ssl_conn} iret = 1"),
        Entry(Level.ERROR, f"{ssl_conn} Failed to connect to peer {peer_ip}"),
    ]


def went_down(peer_ip: str, peer_uuid: str, reason: str) -> list[Entry]:
    """Either end's lines when an established tunnel drops (ASSUMED wording)."""
    return [
        Entry(Level.INFO, f"Peer {peer_uuid} is disconnected", module="sf_peers"),
        Entry(Level.WARN, f"Connection to peer {peer_ip} closed: {reason}", module="sf_connections"),
    ]


class MessagesLog:
    """Appends sftunneld lines to one device's messages file (a host path), with that device's pid and tid."""

    def __init__(self, path: Path, *, hostname: str, uuid: str) -> None:
        self.path = path
        self._hostname = hostname
        self._pid, self._tid = daemon_ids(uuid)

    def write(self, when_utc: datetime, entries: Sequence[Entry]) -> None:
        text = "".join(
            format_line(when_utc=when_utc, hostname=self._hostname, pid=self._pid, tid=self._tid, entry=e)
            + "\n"
            for e in entries
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as log:
            log.write(text)
