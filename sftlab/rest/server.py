"""An FMC's HTTPS listener for its REST API: a small HTTP/1.1 server on asyncio streams, keep-alive included.

A real FMC serves its API on 443 with a self-signed certificate made at install; the lab makes one per FMC
(`self_signed_cert`: CN and subjectAltName are the FMC's name and address) and listens on the FMC's
address, on a port the kernel picks. The API itself is `sftlab.rest.api.FmcRestApi`. Limits of the
transport, as a server has them: request heads of at most 16 KiB, bodies of at most 64 KiB, 30 s of
silence closes a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sftlab.fleet.pki import cert_pem, key_pem
from sftlab.rest.api import FmcRestApi, Request, Response

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
IDLE_S = 30.0


def self_signed_cert(key: rsa.RSAPrivateKey, name: str, ip: str, now_utc: datetime) -> x509.Certificate:
    """The FMC's HTTPS certificate: self-signed, as an FMC's is out of the box, valid for its address."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now_utc - timedelta(days=1))
        .not_valid_after(now_utc + timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


def server_context(directory: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> ssl.SSLContext:
    """A TLS server context with `cert`; the key goes through a 0600 file in `directory` (ssl loads files)."""
    key_file, cert_file = directory / "https-key.pem", directory / "https-cert.pem"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key_pem(key))
    cert_file.write_bytes(cert_pem(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class RestServer:
    """Serves one `FmcRestApi` over HTTPS on `ip`; `port` once started; `close` ends every connection."""

    def __init__(self, api: FmcRestApi, context: ssl.SSLContext) -> None:
        self.api = api
        self._context = context
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, ip: str) -> int:
        self._server = await asyncio.start_server(self._serve, ip, 0, ssl=self._context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        peer = str(writer.get_extra_info("peername", ("?", 0))[0])
        try:
            while await self._one(reader, writer, peer):
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            # The lab is stopping. Ending quietly: asyncio's stream callback would log a cancelled handler.
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> bool:
        """Read one request, answer it; whether the connection stays open for another."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_S)
        if len(head) > MAX_HEAD:
            await _send(writer, Response(431), keep=False)
            return False
        try:
            method, target, version, headers = _parse_head(head)
            length = int(headers.get("content-length", "0"))
        except ValueError:
            await _send(writer, Response(400), keep=False)
            return False
        if length > MAX_BODY or length < 0:
            await _send(writer, Response(413), keep=False)
            return False
        if length:
            await reader.readexactly(length)
        response = self.api.handle(Request(method, target, headers, peer), time.monotonic())
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        await _send(writer, response, keep=keep)
        return keep


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(version)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(line)
        headers[name.strip().lower()] = value.strip()
    return method, target, version, headers


async def _send(writer: asyncio.StreamWriter, response: Response, *, keep: bool) -> None:
    reason = HTTPStatus(response.status).phrase
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if response.status != 204:
        lines.append(f"Content-Length: {len(response.body)}")
    lines.append(f"Connection: {'keep-alive' if keep else 'close'}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
    await writer.drain()
