"""The FMC REST client of `sftrenew inventory import --fmc`: HTTPS, token, pages, rate limit.

Standard library only (`http.client` over one kept-alive connection). The decisions are `pipeline.fmc_rest`'s
(which token call, how long to wait, what a page holds); this module does the I/O. The FMC's certificate is
verified: against the system's CAs, a CA file (`--ca-file`), or a pinned SHA-256 fingerprint of the FMC's
own certificate (`--fingerprint`), which is checked before anything, the password included, is sent.
`--insecure` skips the check, loudly. The password and the tokens never appear in a message.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from pipeline import fmc_rest
from pipeline.errors import (
    AuthenticationFailedError,
    CommandFailedError,
    ConfigError,
    DeviceUnreachableError,
)
from pipeline.fmc_rest import DeviceRecord, Token

ROUTE = "https"
#: 429s in a row, and 401s in a row, after which the import gives up.
MAX_WAITS = 8
MAX_AUTH_RETRIES = 3
#: A listing longer than this many pages is a loop, not a fleet.
MAX_PAGES = 10_000


@dataclass(frozen=True)
class TlsChoice:
    """How the FMC's certificate is checked: `ca_file`, else `fingerprint`, else `insecure`, else the
    system's CAs."""

    ca_file: Path | None = None
    fingerprint: str | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        if self.fingerprint is None and not self.insecure:
            try:
                return ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot load the CA file {self.ca_file}: {getattr(exc, 'strerror', None) or exc}; give "
                    "a PEM file with the FMC's certificate or the CA that issued it"
                ) from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context


@dataclass
class ApiStats:
    """What the conversation took: what the operator is told."""

    requests: int = 0
    rate_limited: int = 0
    refreshed: int = 0
    generated: int = 0
    waits_s: list[float] = field(default_factory=list)


class FmcApi:
    """One FMC's REST API, as `user`. `sleep` is injected so the waits can be seen in tests."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        user: str,
        password: SecretStr,
        tls: TlsChoice,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host, self.port = host, port
        self._user, self._password = user, password
        self._tls, self._timeout, self._sleep = tls, timeout, sleep
        self._conn: http.client.HTTPSConnection | None = None
        self._token: Token | None = None
        self.stats = ApiStats()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def device_records(self, page_size: int = fmc_rest.MAX_PAGE_SIZE) -> list[DeviceRecord]:
        """Every device the FMC manages, page by page (`devicerecords?expanded=true`)."""
        records: list[DeviceRecord] = []
        offset = 0
        for _ in range(MAX_PAGES):
            data = self._get_page(offset, page_size)
            try:
                page = fmc_rest.parse_devicerecords(data)
            except fmc_rest.ApiShapeError as exc:
                raise CommandFailedError(self.where, ROUTE, "GET devicerecords", 200, str(exc)) from None
            records += page.records
            if not page.has_next or not page.records:
                return records
            offset = page.offset + len(page.records)
        raise CommandFailedError(self.where, ROUTE, "GET devicerecords", 200, f"more than {MAX_PAGES} pages")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ one call, with its retries

    def _get_page(self, offset: int, limit: int) -> object:
        """One page's JSON; a 401 gets a fresh token and a 429 a wait, a few times each, then it gives up."""
        waits = auths = 0
        while True:
            token = self._token or self._authenticate()
            path = fmc_rest.devicerecords_path(token.domain, offset=offset, limit=limit)
            status, headers, body = self._send("GET", path, {"X-auth-access-token": token.access})
            if status == 200:
                try:
                    return json.loads(body)
                except ValueError:
                    raise CommandFailedError(
                        self.where, ROUTE, "GET devicerecords", 200, "not JSON"
                    ) from None
            if status == 401 and auths < MAX_AUTH_RETRIES:
                auths += 1
                self._authenticate()
            elif status == 429 and waits < MAX_WAITS:
                waits += 1
                self._wait(waits, headers.get("retry-after"))
            else:
                raise _failed(self.where, "GET devicerecords", status, body)

    def _authenticate(self) -> Token:
        """A fresh token: the current one refreshed while it may be (3 times), else a new one."""
        if fmc_rest.next_auth(self._token) == "refresh":
            assert self._token is not None  # noqa: S101 - next_auth says refresh only with a token
            old = self._token
            refresh = {"X-auth-access-token": old.access, "X-auth-refresh-token": old.refresh}
            status, headers, _ = self._token_call(fmc_rest.REFRESH_PATH, refresh)
            if status == 204:
                self.stats.refreshed += 1
                self._token = self._token_from(headers, refreshes=old.refreshes + 1)
                return self._token
        credentials = base64.b64encode(f"{self._user}:{self._password.get_secret_value()}".encode()).decode()
        status, headers, body = self._token_call(
            fmc_rest.TOKEN_PATH, {"Authorization": f"Basic {credentials}"}
        )
        if status == 401:
            raise AuthenticationFailedError(self.where, ROUTE, self._user)
        if status != 204:
            raise _failed(self.where, "POST generatetoken", status, body)
        self.stats.generated += 1
        self._token = self._token_from(headers, refreshes=0)
        return self._token

    def _token_call(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        for waits in range(1, MAX_WAITS + 2):
            status, answer, body = self._send("POST", path, headers)
            if status != 429 or waits > MAX_WAITS:
                return status, answer, body
            self._wait(waits, answer.get("retry-after"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _token_from(self, headers: dict[str, str], *, refreshes: int) -> Token:
        try:
            return fmc_rest.token_from_headers(headers, refreshes=refreshes)
        except fmc_rest.ApiShapeError as exc:
            raise CommandFailedError(self.where, ROUTE, "POST generatetoken", 204, str(exc)) from None

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = fmc_rest.retry_delay(attempt, retry_after)
        self.stats.rate_limited += 1
        self.stats.waits_s.append(delay)
        self._sleep(delay)

    # ------------------------------------------------------------------ the wire

    def _send(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """One request on the kept-alive connection (opened, and its certificate checked, when needed); a
        connection the FMC closed between two requests is opened again once."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=b"" if method == "POST" else None, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if attempt == 2:
                    raise DeviceUnreachableError(
                        self.where, ROUTE, f"connection lost ({exc.strerror or 'closed'})"
                    ) from None
                continue
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise DeviceUnreachableError(self.where, ROUTE, _reason(exc)) from None
            self.stats.requests += 1
            if response.will_close:
                self.close()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is not None:
            return self._conn
        conn = http.client.HTTPSConnection(
            self.host, self.port, timeout=self._timeout, context=self._tls.context()
        )
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise ConfigError(
                f"the FMC at {self.where} presented a certificate that did not verify "
                f"({exc.verify_message}); "
                "give the FMC's certificate (or its CA) with --ca-file FILE, or pin it with --fingerprint "
                "SHA256 (`openssl s_client -connect HOST:443 </dev/null | openssl x509 -noout -fingerprint "
                "-sha256`)"
            ) from None
        except OSError as exc:
            conn.close()
            raise DeviceUnreachableError(self.where, ROUTE, _reason(exc)) from None
        self._check_pin(conn)
        self._conn = conn
        return conn

    def _check_pin(self, conn: http.client.HTTPSConnection) -> None:
        if self._tls.fingerprint is None:
            return
        der = conn.sock.getpeercert(binary_form=True) if isinstance(conn.sock, ssl.SSLSocket) else None
        seen = hashlib.sha256(der or b"").hexdigest()
        if seen != normalize_fingerprint(self._tls.fingerprint):
            conn.close()
            raise ConfigError(
                f"the FMC at {self.where} presented a certificate with SHA-256 fingerprint {_colons(seen)}, "
                "not "
                "the one given with --fingerprint; nothing was sent. Check the FMC's certificate out of band"
            )


def normalize_fingerprint(text: str) -> str:
    """`AA:BB:...` or `aabb...` (as openssl and browsers print it) -> 64 lower-case hex digits."""
    return text.replace(":", "").replace(" ", "").lower()


def _colons(hex_digits: str) -> str:
    return ":".join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2)).upper()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | ssl.SSLError):
        return type(exc).__name__
    return getattr(exc, "strerror", None) or type(exc).__name__


def _failed(where: str, call: str, status: int, body: bytes) -> CommandFailedError:
    """An answer the import cannot use: the FMC's own description (its error JSON), never the request."""
    try:
        messages = json.loads(body)["error"]["messages"]
        detail = "; ".join(str(m.get("description", "")) for m in messages)
    except (ValueError, KeyError, TypeError, AttributeError):
        detail = body[:200].decode("utf-8", "replace")
    return CommandFailedError(where, ROUTE, call, status, f"HTTP {status}: {detail}")
