"""The FMC REST API as `sftrenew inventory import --fmc` uses it: paths, tokens, pages, and when to wait.

Pure: headers and parsed JSON in, values out; `sftrenew.fmc_api` does the HTTPS. What an FMC does (and the
lab's FMCs do, docs/lab.md):
- `POST /api/fmc_platform/v1/auth/generatetoken` with HTTP basic auth and no body answers 204 with the
  headers `X-auth-access-token`, `X-auth-refresh-token` and `DOMAIN_UUID` (and `DOMAINS`, a JSON list);
- the access token lives 30 minutes and can be refreshed 3 times (`.../auth/refreshtoken` with both tokens),
  then a new one must be generated; an expired or unknown token answers 401;
- `GET /api/fmc_config/v1/domain/{domain}/devices/devicerecords?expanded=true&offset=N&limit=M` answers a
  page: `items` (absent when there are none), `paging` (`offset`, `limit`, `count`, `pages`, `next`);
  `limit` is 25 by default and at most 1000 (a larger one is lowered);
- more than 120 requests a minute answer 429; `Retry-After` is honoured when the FMC sends it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode

from pipeline.inventory_loader import bad_host, bad_name, bad_uuid

TOKEN_PATH = "/api/fmc_platform/v1/auth/generatetoken"  # noqa: S105 - a path, not a password
REFRESH_PATH = "/api/fmc_platform/v1/auth/refreshtoken"
#: Refreshes one generated token allows; after them, a new token is generated.
MAX_REFRESHES = 3
MAX_PAGE_SIZE = 1000
#: Backoff without a `Retry-After`: 2, 4, 8... seconds, at most this many.
BACKOFF_CAP_S = 60.0
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class ApiShapeError(ValueError):
    """An FMC answer without a field the import needs; the message names the field, never a value."""


@dataclass(frozen=True)
class Token:
    """An FMC access token, its refresh token, the domain it opened, and how often it was refreshed."""

    access: str = field(repr=False)
    refresh: str = field(repr=False)
    domain: str
    refreshes: int = 0


def devicerecords_path(domain: str, *, offset: int, limit: int) -> str:
    query = urlencode({"expanded": "true", "offset": offset, "limit": limit})
    return f"/api/fmc_config/v1/domain/{domain}/devices/devicerecords?{query}"


def token_from_headers(headers: Mapping[str, str], *, refreshes: int = 0) -> Token:
    """The token of a 204 from generatetoken or refreshtoken; `headers` keys are lower case."""
    access = headers.get("x-auth-access-token", "")
    refresh = headers.get("x-auth-refresh-token", "")
    domain = headers.get("domain_uuid", "")
    for name, value in (("X-auth-access-token", access), ("DOMAIN_UUID", domain)):
        if not value:
            raise ApiShapeError(f"the token answer has no {name} header")
    return Token(access, refresh, domain, refreshes)


def next_auth(token: Token | None) -> Literal["generate", "refresh"]:
    """After a 401 (or before the first call): refresh while the token allows it, else generate anew."""
    if token is None or not token.refresh or token.refreshes >= MAX_REFRESHES:
        return "generate"
    return "refresh"


def retry_delay(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait after the `attempt`th 429 in a row (1-based): the FMC's `Retry-After` when it sends
    one in seconds (an HTTP date, which this pure function cannot compare with a clock, counts as absent),
    else 2, 4, 8... up to a minute."""
    text = (retry_after or "").strip()
    if text.isdigit():
        return min(float(text), BACKOFF_CAP_S)
    return float(min(2.0**attempt, BACKOFF_CAP_S))


@dataclass(frozen=True, kw_only=True)
class DeviceRecord:
    """One managed device, as the FMC lists it."""

    id: str
    name: str
    host: str
    model: str = ""
    sw_version: str = ""


@dataclass(frozen=True)
class RecordsPage:
    records: tuple[DeviceRecord, ...]
    offset: int
    count: int
    has_next: bool


def parse_devicerecords(data: object) -> RecordsPage:
    """One page of `devicerecords?expanded=true`. A page with no devices has no `items` key (as the FMC
    answers); `ApiShapeError` names the field missing or of the wrong type."""
    if not isinstance(data, dict):
        raise ApiShapeError("the devicerecords answer is not a JSON object")
    paging = data.get("paging")
    if not isinstance(paging, dict):
        raise ApiShapeError("the devicerecords answer has no paging object")
    items = data.get("items", [])
    if not isinstance(items, list):
        raise ApiShapeError("devicerecords items is not a list")
    records = tuple(_record(item, i) for i, item in enumerate(items))
    offset, count = _int(paging, "offset"), _int(paging, "count")
    has_next = bool(paging.get("next")) and offset + len(records) < count
    return RecordsPage(records, offset, count, has_next)


def _record(item: object, index: int) -> DeviceRecord:
    if not isinstance(item, dict):
        raise ApiShapeError(f"devicerecords items[{index}] is not an object")
    values: dict[str, str] = {}
    for key in ("id", "name", "hostName", "model", "sw_version"):
        value = item.get(key, "")
        if not isinstance(value, str) or (key in ("id", "name", "hostName") and not value):
            raise ApiShapeError(f"devicerecords items[{index}].{key} is missing or not text")
        values[key] = value
    return DeviceRecord(
        id=values["id"],
        name=values["name"],
        host=values["hostName"],
        model=values["model"],
        sw_version=values["sw_version"],
    )


def _int(paging: Mapping[str, object], key: str) -> int:
    value = paging.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiShapeError(f"devicerecords paging.{key} is missing or not a number")
    return value


@dataclass(frozen=True)
class ListedFtd:
    """A device record made fit for the inventory: its name (changed to the name rule when needed)."""

    name: str
    host: str
    uuid: str | None
    renamed_from: str | None


def inventory_ftds(records: Sequence[DeviceRecord], *, taken: Sequence[str]) -> tuple[ListedFtd, ...]:
    """The FTDs to write for `records`: a name the inventory refuses (spaces, say) has each run of other
    characters replaced by '-' and is reported; a name already used (by an FMC in `taken`, or twice) gets
    '-2', '-3'...; the record id becomes the `uuid` when it is one. Raises `ApiShapeError` for a `hostName`
    that is neither an IP address nor a hostname."""
    used = set(taken)
    listed: list[ListedFtd] = []
    for record in records:
        why = bad_host(record.host)
        if why is not None:
            raise ApiShapeError(f"device '{record.name}' has hostName {why}")
        name = record.name if bad_name(record.name) is None else _fit_name(record.name)
        base, number = name, 2
        while name in used:
            name, number = f"{base}-{number}", number + 1
        used.add(name)
        uuid = record.id.lower() if bad_uuid(record.id.lower()) is None else None
        listed.append(ListedFtd(name, record.host, uuid, None if name == record.name else record.name))
    return tuple(listed)


def _fit_name(raw: str) -> str:
    name = _NOT_NAME.sub("-", raw).strip("-._")
    return name or "device"
