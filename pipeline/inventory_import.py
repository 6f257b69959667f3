"""Inventories made from what the operator already has: the vendor's `devices.csv`, or the FMC's own listing.

Pure: text and values in, the inventory document (docs/inventory.md, format 1) and the secrets out.
`sftrenew inventory import` (sftrenew/inventory_cmd.py) reads the CSV or asks the FMC, and writes the files;
`pipeline.fmc_rest` reads the FMC's answers.

The vendor's procedure (device-facts 4.2) has the operator write one line per device: device name, IP
address, admin username, admin password; the FMC the certificates come from first, then its FTDs, then the
other FMC of the HA pair. So: the first device is the primary FMC, the secondary is the last one (or the one
named), and every device between them is an FTD. Passwords never go into the inventory: each distinct
login becomes a credential whose password is a `{secret: NAME}` reference, and its value goes to the secrets
file. No error message here ever quotes a line of the CSV (it holds passwords).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import SecretStr

from pipeline.errors import InventoryError, InventoryProblem
from pipeline.inventory_loader import VERSION, bad_host, bad_name

#: The vendor's columns, in order (device-facts 4.2).
CSV_COLUMNS = ("device name", "IP address", "admin username", "admin password")
#: Words that mark the first row as a header row (the vendor's file has none; a spreadsheet export may).
_HEADER_WORDS = frozenset(
    {
        "name", "device", "device name", "device_name", "devicename", "hostname",
        "ip", "ip address", "ip_address", "ipaddress", "address", "host", "management ip",
        "user", "username", "user name", "admin user", "admin username",
        "password", "admin password", "pass",
    }
)  # fmt: skip


@dataclass(frozen=True)
class CsvDevice:
    """One device line of the vendor's CSV; `line` is its 1-based line number in the file."""

    line: int
    name: str
    host: str
    username: str
    password: SecretStr


@dataclass(frozen=True, kw_only=True)
class ImportedDevice:
    name: str
    host: str
    credential: str
    uuid: str | None = None


@dataclass(frozen=True, kw_only=True)
class ImportedPair:
    """What an import learned: one FMC pair, its FTDs, and the logins they use (credential -> username)."""

    pair: str
    primary: ImportedDevice
    secondary: ImportedDevice
    ftds: tuple[ImportedDevice, ...]
    credentials: Mapping[str, str]


def parse_devices_csv(text: str, *, source: str) -> tuple[CsvDevice, ...]:
    """The devices of a vendor `devices.csv`, in file order.

    Blank lines are skipped; a first row that reads as column titles is skipped; fields may be quoted (a
    password with a comma) and spaces after a comma are ignored. Every problem is collected and raised as
    one `InventoryError` naming the file and line: a row without exactly four fields, a bad device name, an
    IP address that is not one (or a hostname), a name or address used twice, an empty username or password,
    fewer than two devices (a pair needs both FMCs).
    """
    problems: list[InventoryProblem] = []
    devices: list[CsvDevice] = []
    first = True
    reader = csv.reader(io.StringIO(text), skipinitialspace=True, strict=True)
    try:
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            if first and _is_header(row):
                first = False
                continue
            first = False
            device = _device(row, reader.line_num, source, problems)
            if device is not None:
                devices.append(device)
    except csv.Error:
        # Not the csv module's text: it may quote the line.
        problems.append(
            InventoryProblem(source, reader.line_num, "row", "unbalanced quotes; close every quoted field")
        )
    problems += _duplicates(devices, source)
    if not problems and len(devices) < 2:
        problems.append(
            InventoryProblem(
                source,
                None,
                "devices",
                f"found {len(devices)} device lines; the CSV lists the primary FMC "
                "first, then its FTDs, then the secondary FMC, so it needs two lines at least",
            )
        )
    if problems:
        raise InventoryError(problems)
    return tuple(devices)


def _is_header(row: Sequence[str]) -> bool:
    """Column titles: the second field is no address, and some field is a title word (`admin` alone is a
    username, not a title)."""
    if len(row) < 2 or bad_host(row[1].strip()) is None:
        return False
    return any(field.strip().lower() in _HEADER_WORDS for field in row)


def _device(row: Sequence[str], line: int, source: str, problems: list[InventoryProblem]) -> CsvDevice | None:
    if len(row) != len(CSV_COLUMNS):
        problems.append(
            InventoryProblem(
                source,
                line,
                "row",
                f"expected {len(CSV_COLUMNS)} fields ({', '.join(CSV_COLUMNS)}), found "
                f"{len(row)}; quote a field that holds a comma",
            )
        )
        return None
    name, host, username = (field.strip() for field in row[:3])
    password = row[3]
    found = len(problems)
    for column, why in (("device name", bad_name(name)), ("IP address", bad_host(host))):
        if why is not None:
            problems.append(InventoryProblem(source, line, column, why))
    if not username:
        problems.append(InventoryProblem(source, line, "admin username", "empty; give the admin login name"))
    if not password.strip():
        problems.append(InventoryProblem(source, line, "admin password", "empty; give the admin password"))
    if len(problems) > found:
        return None
    return CsvDevice(line, name, host, username, SecretStr(password))


def _duplicates(devices: Sequence[CsvDevice], source: str) -> list[InventoryProblem]:
    problems: list[InventoryProblem] = []
    names: dict[str, int] = {}
    hosts: dict[str, CsvDevice] = {}
    for device in devices:
        if device.name in names:
            problems.append(
                InventoryProblem(
                    source,
                    device.line,
                    "device name",
                    f"'{device.name}' is already on line {names[device.name]}; device names must be unique",
                )
            )
        names.setdefault(device.name, device.line)
        host = device.host.lower()
        if host in hosts:
            other = hosts[host]
            problems.append(
                InventoryProblem(
                    source,
                    device.line,
                    "IP address",
                    f"{device.host} is already the address of "
                    f"'{other.name}' (line {other.line}); each device has its own address",
                )
            )
        hosts.setdefault(host, device)
    return problems


def pair_from_csv(
    devices: Sequence[CsvDevice], *, pair: str, secondary: str | None = None, source: str = "devices.csv"
) -> tuple[ImportedPair, dict[str, SecretStr]]:
    """The pair the CSV describes, and the secrets file's content (credential name -> password).

    The first device is the primary FMC; the secondary is the device named `secondary`, else the last one.
    Devices sharing a username and password share one credential: `<pair>-admin`, then `<pair>-admin-2`...
    in order of first use. Raises `InventoryError` when `secondary` names no device other than the first.
    """
    _check_pair_name(pair)
    index = len(devices) - 1
    if secondary is not None:
        index = next((i for i, d in enumerate(devices) if d.name == secondary and i > 0), -1)
        if index < 0:
            names = ", ".join(d.name for d in devices[1:])
            raise InventoryError(
                [InventoryProblem(source, None, "--secondary", f"no device '{secondary}' after the first "
                                  f"line (the primary FMC); the CSV has: {names}")]
            )  # fmt: skip
    logins: dict[tuple[str, str], str] = {}
    usernames: dict[str, str] = {}
    secrets: dict[str, SecretStr] = {}

    def entry(device: CsvDevice) -> ImportedDevice:
        key = (device.username, device.password.get_secret_value())
        if key not in logins:
            name = credential_name(pair, len(logins) + 1)
            logins[key] = name
            usernames[name] = device.username
            secrets[name] = device.password
        return ImportedDevice(name=device.name, host=device.host, credential=logins[key])

    entries = [entry(d) for d in devices]
    imported = ImportedPair(
        pair=pair,
        primary=entries[0],
        secondary=entries[index],
        ftds=tuple(e for i, e in enumerate(entries) if i not in (0, index)),
        credentials=usernames,
    )
    return imported, secrets


def credential_name(pair: str, number: int) -> str:
    """The name of the `number`th distinct login of an imported pair (also its key in the secrets file)."""
    return f"{pair}-admin" if number == 1 else f"{pair}-admin-{number}"


def _check_pair_name(pair: str) -> None:
    why = bad_name(pair)
    if why is not None:
        raise InventoryError([InventoryProblem("", None, "--pair", why)])


def inventory_document(imported: ImportedPair, *, known_hosts: str, secrets_file: str) -> dict[str, Any]:
    """The inventory (format 1) as plain data: every password a `{secret: <credential>}` reference."""
    return {
        "version": VERSION,
        "known_hosts": known_hosts,
        "secrets_file": secrets_file,
        "credentials": {
            name: {"username": username, "password": {"secret": name}}
            for name, username in imported.credentials.items()
        },
        "pairs": {
            imported.pair: {
                "primary": _entry(imported.primary),
                "secondary": _entry(imported.secondary),
                "ftds": [_entry(ftd) for ftd in imported.ftds],
            }
        },
    }


def _entry(device: ImportedDevice) -> dict[str, str]:
    entry = {"name": device.name, "host": device.host, "credential": device.credential}
    if device.uuid is not None:
        entry["uuid"] = device.uuid
    return entry


def inventory_text(document: Mapping[str, Any], *, origin: str) -> str:
    """The inventory file's text: a comment saying where it came from, then the document in YAML."""
    head = (
        f"# Written by `sftrenew inventory import` from {origin}.\n"
        "# Passwords are not here: each credential names a key of secrets_file (docs/inventory.md).\n"
        "# SSH ports are 22 unless given; add `jump` and `site` to FTDs that need them.\n"
    )
    return head + yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)


def secrets_text(secrets: Mapping[str, SecretStr]) -> str:
    """The secrets file's text (`name: value` lines, quoted where YAML needs it); the only place values go."""
    plain = {name: value.get_secret_value() for name, value in secrets.items()}
    head = "# Written by `sftrenew inventory import`. Passwords: keep this file mode 0600.\n"
    return head + yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_style='"')


def secrets_template(names: Sequence[str]) -> str:
    """A secrets file with no value yet: one commented line per name for the operator to fill in."""
    lines = [
        "# Written by `sftrenew inventory import`: the FMC's listing holds no passwords.",
        "# Fill in one line per name below (remove the '# '), then run `sftrenew inventory check`.",
        *(f'# {name}: "the password"' for name in names),
    ]
    return "\n".join(lines) + "\n"
