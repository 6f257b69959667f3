"""The two FMC REST endpoints an inventory import uses, with a real FMC's shapes and limits (docs/lab.md).

Pure: a parsed request and the time in, a response out (`RestServer` does the HTTPS). Tokens and the rate
limit are the FMC's: an access token lives `rest_token_ttl_s` (1800 s) and is refreshed at most 3 times;
each user may make `rest_rate_limit` requests (120) per `rest_rate_window_s` (60 s), the next ones answer
429 (with `Retry-After` only when the `rest_retry_after` knob is on: whether a real FMC sends it is not
documented). The knobs are read at every request, so `Fleet.set_knobs` changes them while the lab runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sftlab.fleet.spec import Knobs

#: The Global domain's UUID: the same on every FMC.
GLOBAL_DOMAIN = "e276abec-e0f2-11e3-8169-6d9ed49b625f"
TOKEN_PATH = "/api/fmc_platform/v1/auth/generatetoken"
REFRESH_PATH = "/api/fmc_platform/v1/auth/refreshtoken"
RECORDS_PATH = f"/api/fmc_config/v1/domain/{GLOBAL_DOMAIN}/devices/devicerecords"
MAX_REFRESHES = 3
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    #: Header names in lower case.
    headers: Mapping[str, str]
    peer: str


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass
class _Token:
    user: str
    access: str
    refresh: str
    expires_at: float
    refreshes: int = 0


@dataclass
class FmcRestApi:
    """One FMC's REST API. `password_of(user)` is the password the FMC accepts (None: no such user);
    `devices()` the managed FTDs, each `{id, name, hostName, model, sw_version}`; `knobs()` the FMC's."""

    host: str
    password_of: Callable[[str], str | None]
    devices: Callable[[], Sequence[Mapping[str, str]]]
    knobs: Callable[[], Knobs]
    #: What the API answered, by status: what a test reads to see a 429 or a 401 happened.
    statuses: Counter[int] = field(default_factory=Counter)
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _calls: dict[str, deque[float]] = field(default_factory=dict)

    def handle(self, request: Request, now: float) -> Response:
        response = self._handle(request, now)
        self.statuses[response.status] += 1
        return response

    def _handle(self, request: Request, now: float) -> Response:
        path = urlsplit(request.target).path
        routes: dict[str, tuple[str, Callable[[Request, float], Response]]] = {
            TOKEN_PATH: ("POST", self._generate),
            REFRESH_PATH: ("POST", self._refresh),
            RECORDS_PATH: ("GET", self._records),
        }
        if path not in routes:
            return _error(404, "The requested resource was not found.")
        method, handler = routes[path]
        if request.method != method:
            return _error(405, f"Method {request.method} is not allowed here.")
        limited = self._rate_limited(self._caller(request, now), now)
        return limited if limited is not None else handler(request, now)

    def _caller(self, request: Request, now: float) -> str:
        """Whom the rate limit counts: the basic-auth user, else the token's user, else the address."""
        user = _basic_user(request.headers.get("authorization", ""))
        token = self._tokens.get(request.headers.get("x-auth-access-token", ""))
        return user[0] if user else token.user if token else f"addr:{request.peer}"

    def _rate_limited(self, caller: str, now: float) -> Response | None:
        knobs = self.knobs()
        calls = self._calls.setdefault(caller, deque())
        while calls and calls[0] <= now - knobs.rest_rate_window_s:
            calls.popleft()
        if len(calls) >= knobs.rest_rate_limit:
            headers: tuple[tuple[str, str], ...] = ()
            if knobs.rest_retry_after:
                wait = max(1, math.ceil(calls[0] + knobs.rest_rate_window_s - now))
                headers = (("Retry-After", str(wait)),)
            return _error(429, "Too Many Requests", headers)
        calls.append(now)
        return None

    def _generate(self, request: Request, now: float) -> Response:
        user = _basic_user(request.headers.get("authorization", ""))
        if user is None:
            return _error(401, "Authentication credentials were not provided.")
        name, password = user
        expected = self.password_of(name)
        if expected is None or not secrets.compare_digest(expected.encode(), password.encode()):
            return _error(401, "Invalid username or password.")
        return self._issue(_Token(name, "", "", 0.0), now)

    def _refresh(self, request: Request, now: float) -> Response:
        token = self._tokens.get(request.headers.get("x-auth-access-token", ""))
        if token is None or request.headers.get("x-auth-refresh-token", "") != token.refresh:
            return _error(401, "Invalid refresh token.")
        if token.refreshes >= MAX_REFRESHES:
            return _error(401, "Refresh token expired: the token was refreshed 3 times; generate a new one.")
        del self._tokens[token.access]
        return self._issue(_Token(token.user, "", "", 0.0, token.refreshes + 1), now)

    def _issue(self, token: _Token, now: float) -> Response:
        token.access, token.refresh = str(uuid.uuid4()), str(uuid.uuid4())
        token.expires_at = now + self.knobs().rest_token_ttl_s
        self._tokens[token.access] = token
        domains = json.dumps([{"name": "Global", "uuid": GLOBAL_DOMAIN}])
        return Response(
            204,
            (
                ("X-auth-access-token", token.access),
                ("X-auth-refresh-token", token.refresh),
                ("USER_UUID", str(uuid.uuid5(uuid.NAMESPACE_OID, token.user))),
                ("DOMAIN_ID", "111"),
                ("DOMAIN_UUID", GLOBAL_DOMAIN),
                ("global", GLOBAL_DOMAIN),
                ("DOMAINS", domains),
            ),
        )

    def _records(self, request: Request, now: float) -> Response:
        token = self._tokens.get(request.headers.get("x-auth-access-token", ""))
        if token is None or token.expires_at <= now:
            return _error(401, "Access token invalid.")
        query = parse_qs(urlsplit(request.target).query)
        try:
            offset = max(0, int(query.get("offset", ["0"])[0]))
            limit = min(MAX_LIMIT, max(1, int(query.get("limit", [str(DEFAULT_LIMIT)])[0])))
        except ValueError:
            return _error(400, "Invalid value for offset or limit.")
        expanded = query.get("expanded", ["false"])[0].lower() == "true"
        page = _page(f"https://{self.host}{RECORDS_PATH}", self.devices(), offset, limit, expanded)
        return Response(200, (("Content-Type", "application/json"),), json.dumps(page).encode())


def _page(
    base: str, devices: Sequence[Mapping[str, str]], offset: int, limit: int, expanded: bool
) -> dict[str, Any]:
    """A devicerecords page as an FMC shapes it: no `items` key at all when there is nothing to list."""
    extra = "&expanded=true" if expanded else ""
    count = len(devices)
    if count == 0:
        self_url = f"{base}?offset=0&limit=0{extra}"
        return {"links": {"self": self_url}, "paging": {"offset": 0, "limit": 0, "count": 0, "pages": 0}}
    links: dict[str, Any] = {"self": f"{base}?offset={offset}&limit={limit}{extra}"}
    paging: dict[str, Any] = {"offset": offset, "limit": limit, "count": count, "pages": -(-count // limit)}
    if offset + limit < count:
        paging["next"] = links["next"] = [f"{base}?offset={offset + limit}&limit={limit}{extra}"]
    page: dict[str, Any] = {"links": links}
    items = [_item(base, device, expanded) for device in devices[offset : offset + limit]]
    if items:
        page["items"] = items
    page["paging"] = paging
    return page


def _item(base: str, device: Mapping[str, str], expanded: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": device["id"],
        "type": "Device",
        "links": {"self": f"{base}/{device['id']}"},
        "name": device["name"],
    }
    if expanded:
        item |= {
            "description": "NOT SUPPORTED",
            "model": device["model"],
            "modelId": "A",
            "modelNumber": "75",
            "modelType": "Sensor",
            "healthStatus": "green",
            "sw_version": device["sw_version"],
            "healthPolicy": {"id": GLOBAL_DOMAIN, "type": "HealthPolicy", "name": "Initial_Health_Policy"},
            "accessPolicy": {"id": GLOBAL_DOMAIN, "type": "AccessPolicy", "name": "lab-policy"},
            "hostName": device["hostName"],
            "license_caps": ["BASE", "MALWARE", "URLFilter", "THREAT"],
            "keepLocalEvents": False,
            "prohibitPacketTransfer": False,
            "ftdMode": "ROUTED",
            "metadata": {
                "readOnly": {"state": False},
                "inventoryData": {"cpuCores": "4", "memoryInMB": "8192"},
            },
        }
    return item


def _basic_user(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep and user else None


def _error(status: int, description: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = {
        "error": {"category": "FRAMEWORK", "messages": [{"description": description}], "severity": "ERROR"}
    }
    return Response(status, (("Content-Type", "application/json"), *headers), json.dumps(body).encode())
