"""sftunnel's TLS and wire format: contexts built from a device's files, frames, and failure texts.

Contexts are made from the files on disk as they are at every handshake (so new certificates take effect on
the next handshake, device-facts 3.1): read each time, built once per content. A frame is a 4-byte
big-endian length and a JSON object. A refused certificate is diagnosed the way OpenSSL judged it, for the
messages log of the end that verified (`lab.messages`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import struct
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import pem as asn1_pem  # type: ignore[import-untyped]  # it ships no type hints
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from sftlab.fleet.layout import DeviceTree
from sftlab.tunnel import messages
from sftlab.tunnel.messages import AttemptFailure

__all__ = [
    "CIPHER",
    "NO_CHECK_TIME",
    "STEP_TIMEOUT",
    "Streams",
    "cert_failure",
    "cert_title",
    "owner_context",
    "peer_context",
    "reason",
    "receive",
    "send",
]

NO_CHECK_TIME = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME (device-facts 12: tunnels that predate expiry)
CIPHER = "AES256-GCM-SHA384"
# Bound for steps that end on their own on loopback; it only keeps a wedged lab from hanging for ever.
STEP_TIMEOUT = 30.0
_HEADER = struct.Struct("!I")
_MAX_FRAME = 1 << 20

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _base_context(protocol: ssl._SSLMethod, *, lenient: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if lenient:
        ctx.verify_flags |= NO_CHECK_TIME
    return ctx


def owner_context(tree: DeviceTree, *, lenient: bool) -> ssl.SSLContext:
    """The owner's side: `/etc/sf/keys` identity, `/etc/sf/ca_root` trust (sftunnel.conf's proxyssl block)."""
    paths = (
        tree.host_path(tree.SFTUNNEL_CERT),
        tree.host_path(tree.SFTUNNEL_KEY),
        tree.host_path(tree.CA_CERT),
    )
    return _context_for(ssl.PROTOCOL_TLS_SERVER, *paths, lenient=lenient)


def peer_context(tree: DeviceTree, owner_uuid: str, *, lenient: bool) -> ssl.SSLContext:
    """The peer's side: everything from its folder for the owner. No hostname check: the CN is `localhost`."""
    folder = tree.host_path(tree.peer_dir(owner_uuid))
    paths = (folder / "sftunnel-cert.pem", folder / "sftunnel-key.pem", folder / "cacert.pem")
    return _context_for(ssl.PROTOCOL_TLS_CLIENT, *paths, lenient=lenient)


_CONTEXTS_KEPT = 1024  # about 600 tunnels' peer sides and a few owner sides, old and new files
_contexts: OrderedDict[tuple[object, ...], ssl.SSLContext] = OrderedDict()


def _context_for(
    protocol: ssl._SSLMethod, cert: Path, key: Path, ca: Path, *, lenient: bool
) -> ssl.SSLContext:
    """A context for the three files as they are at this handshake. Built once per content of the files
    (making a context and loading them costs more CPU than the handshake's own crypto, and an FMC accepts
    hundreds of handshakes with one identity), and built again as soon as any of them changes. A context is
    kept only when the files did not change while it was built. Missing or bad files raise as before."""
    found = _digests(cert, key, ca)
    wanted = (protocol, lenient, found)
    ctx = _contexts.get(wanted)
    if ctx is not None:
        _contexts.move_to_end(wanted)
        return ctx
    ctx = _base_context(protocol, lenient=lenient)
    if protocol == ssl.PROTOCOL_TLS_CLIENT:
        ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    if _digests(cert, key, ca) == found:
        _contexts[wanted] = ctx
        if len(_contexts) > _CONTEXTS_KEPT:
            _contexts.popitem(last=False)
    return ctx


def _digests(*paths: Path) -> tuple[bytes, ...]:
    return tuple(hashlib.sha256(path.read_bytes()).digest() for path in paths)


async def send(writer: asyncio.StreamWriter, message: Mapping[str, Any]) -> None:
    data = json.dumps(message).encode("utf-8")
    writer.write(_HEADER.pack(len(data)) + data)
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> dict[str, Any]:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > _MAX_FRAME:
        raise ValueError(f"sftunnel frame of {size} bytes is too large")
    message = json.loads(await reader.readexactly(size))
    if not isinstance(message, dict):
        raise ValueError("an sftunnel frame must hold a JSON object")  # noqa: TRY004 (bad data, not a bad call)
    return message


def reason(exc: BaseException | None) -> str:
    """A short OpenSSL-style text for a failure (`tlsv1 alert unknown ca`, `Connection refused`)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def cert_title(der: bytes | None) -> str:
    """The UUID an sftunnel certificate speaks for (its `title`); empty when absent."""
    if not der:
        return ""
    titles = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.TITLE)
    return str(titles[0].value) if titles else ""


def cert_failure(exc: ssl.SSLCertVerificationError, *, leaf: Path, ca: Path, anchor: Path) -> AttemptFailure:
    """Locate the refused certificate. The other end sent its certificate (`leaf`) and, as OpenSSL does by
    default, its CA (`ca`) when that issued it; the verifier trusts `anchor`. OpenSSL judged with the real
    time, so the diagnosis does too."""
    code, message = int(exc.verify_code), str(exc.verify_message)
    presented = [cert for cert in (_load_cert(leaf), _load_cert(ca)) if cert is not None]
    if len(presented) == 2 and not _issued_by(presented[0], presented[1]):
        presented = presented[:1]
    cert = messages.locate_failure(
        code, message, chain=presented, anchor=_load_cert(anchor), now_utc=datetime.now(UTC)
    )
    return AttemptFailure("handshake", message, cert)


def _load_cert(path: Path) -> x509.Certificate | None:
    """The certificate in `path` for the diagnosis (names, validity, key), or None when there is none.

    A legacy CA's serial 0 makes cryptography warn on loading (and a later release may refuse it), so such a
    certificate is read as a copy whose serial is 1: every field the diagnosis uses is unchanged, and the copy
    never leaves this function's caller (nothing is written or sent)."""
    try:
        _, _, der = asn1_pem.unarmor(path.read_bytes())
        parsed = asn1_x509.Certificate.load(der)
        if parsed["tbs_certificate"]["serial_number"].native <= 0:
            parsed["tbs_certificate"]["serial_number"] = 1
            der = parsed.dump(force=True)
        return x509.load_der_x509_certificate(der)
    except (OSError, ValueError, TypeError, LookupError):
        return None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
