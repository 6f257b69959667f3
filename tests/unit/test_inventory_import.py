"""The pure parts of `sftrenew inventory import`: the vendor's devices.csv, the document it becomes (loaded
back with the product's own loader), the secrets file's text, and the FMC's devicerecords pages."""

from __future__ import annotations

import pytest
import yaml

from pipeline import fmc_rest
from pipeline.errors import InventoryError
from pipeline.inventory import SecretRef
from pipeline.inventory_import import (
    inventory_document,
    inventory_text,
    pair_from_csv,
    parse_devices_csv,
    secrets_template,
    secrets_text,
)
from pipeline.inventory_loader import load_inventory

#: device-facts 4.2's example, as the vendor's procedure writes it (no header, FMC first).
VENDOR = (
    "FMCpri,10.48.79.232,admin,Cisco123\nFTDv,10.48.79.23,admin,Cisco123\n"
    "BSNS-1120-1,10.48.67.54,admin,Cisco123\n"
)
ODD_PASSWORDS = ["Cisco123", "p,ass: 'x' \"y\"", "yes", "0123", " lead"]


def _problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        parse_devices_csv(text, source="devices.csv")
    return [str(p) for p in caught.value.problems]


def test_the_vendors_example_reads_in_file_order() -> None:
    devices = parse_devices_csv(VENDOR, source="devices.csv")
    assert [(d.line, d.name, d.host, d.username) for d in devices] == [
        (1, "FMCpri", "10.48.79.232", "admin"),
        (2, "FTDv", "10.48.79.23", "admin"),
        (3, "BSNS-1120-1", "10.48.67.54", "admin"),
    ]
    assert devices[0].password.get_secret_value() == "Cisco123"
    assert "Cisco123" not in repr(devices)


def test_header_quotes_blank_lines_crlf_and_spaces_after_commas() -> None:
    text = (
        "Device Name,IP Address,Admin Username,Admin Password\r\n\r\n"
        'fmc-a, 192.0.2.1, admin, "p,ass: \'x\' ""y"""\r\n'
        "   \r\n"
        "ftd-1,2001:db8::1,root,secret\r\n"
        "fmc-b,fmc-b.example.net,admin,Cisco123\r\n"
    )
    devices = parse_devices_csv(text, source="devices.csv")
    assert [(d.line, d.name, d.host) for d in devices] == [
        (3, "fmc-a", "192.0.2.1"),
        (5, "ftd-1", "2001:db8::1"),
        (6, "fmc-b", "fmc-b.example.net"),
    ]
    assert devices[0].password.get_secret_value() == "p,ass: 'x' \"y\""


def test_a_first_line_whose_user_is_admin_is_a_device_not_a_header() -> None:
    assert parse_devices_csv(VENDOR, source="x")[0].name == "FMCpri"


def test_every_problem_is_named_by_line_and_no_password_is_quoted() -> None:
    text = (
        "FMCpri,10.48.79.232,admin,Pw-Line-1\n"
        "FTD v,10.48.79.23,admin,Pw-Line-2\n"
        "FTD2,999.1.1.1,admin,Pw-Line-3\n"
        "FTD3,10.1.1.1,Pw-Line-4\n"
        "FMCpri,10.48.79.232,admin,Pw-Line-5\n"
        "FTD4,10.1.1.4,,\n"
    )
    problems = _problems(text)
    assert problems == [
        "devices.csv:2: device name: 'FTD v' is not a valid name; use letters, digits, '.', '_' and '-', "
        "starting with a letter or digit",
        "devices.csv:3: IP address: '999.1.1.1' is not an IP address; give a valid IPv4 or IPv6 address, "
        "or a hostname",
        "devices.csv:4: row: expected 4 fields (device name, IP address, admin username, admin password), "
        "found 3; quote a field that holds a comma",
        "devices.csv:6: admin username: empty; give the admin login name",
        "devices.csv:6: admin password: empty; give the admin password",
        "devices.csv:5: device name: 'FMCpri' is already on line 1; device names must be unique",
        "devices.csv:5: IP address: 10.48.79.232 is already the address of 'FMCpri' (line 1); each device "
        "has its own address",
    ]
    assert not any("Pw-Line" in p for p in problems)


def test_unbalanced_quotes_and_too_few_devices() -> None:
    assert _problems('fmc,10.0.0.1,admin,"Pw-Open\n') == [
        "devices.csv:1: row: unbalanced quotes; close every quoted field"
    ]
    assert _problems("\n\nfmc,10.0.0.1,admin,pw\n") == [
        "devices.csv: devices: found 1 device lines; the CSV lists the primary FMC first, then its FTDs, "
        "then the secondary FMC, so it needs two lines at least"
    ]


def _csv(passwords: list[str]) -> str:
    names = ["fmc-a", "ftd-1", "ftd-2", "ftd-3", "fmc-b"]
    rows = []
    for i, (name, password) in enumerate(zip(names, passwords, strict=True)):
        quoted = '"' + password.replace('"', '""') + '"'
        rows.append(f"{name},10.0.0.{i + 1},admin,{quoted}")
    return "\n".join(rows) + "\n"


def test_the_pair_first_is_primary_last_is_secondary_and_logins_become_credentials() -> None:
    devices = parse_devices_csv(_csv(ODD_PASSWORDS), source="devices.csv")
    imported, secrets = pair_from_csv(devices, pair="dc1")
    assert (imported.primary.name, imported.secondary.name) == ("fmc-a", "fmc-b")
    assert [f.name for f in imported.ftds] == ["ftd-1", "ftd-2", "ftd-3"]
    assert dict(imported.credentials) == {f"dc1-admin{s}": "admin" for s in ("", "-2", "-3", "-4", "-5")}
    assert {k: v.get_secret_value() for k, v in secrets.items()}["dc1-admin-2"] == ODD_PASSWORDS[1]

    shared = parse_devices_csv(_csv(["same"] * 5), source="devices.csv")
    imported, secrets = pair_from_csv(shared, pair="dc1", secondary="ftd-2")
    assert imported.secondary.name == "ftd-2"
    assert [f.name for f in imported.ftds] == ["ftd-1", "ftd-3", "fmc-b"]
    assert list(secrets) == ["dc1-admin"]


def test_a_secondary_that_is_not_in_the_csv_or_a_bad_pair_name_is_refused() -> None:
    devices = parse_devices_csv(VENDOR, source="devices.csv")
    with pytest.raises(InventoryError, match="no device 'FMCpri' after the first line"):
        pair_from_csv(devices, pair="dc1", secondary="FMCpri")
    with pytest.raises(InventoryError, match="--pair: 'dc 1' is not a valid name"):
        pair_from_csv(devices, pair="dc 1")


def test_the_document_loads_with_the_products_loader_and_holds_no_password() -> None:
    devices = parse_devices_csv(_csv(ODD_PASSWORDS), source="devices.csv")
    imported, secrets = pair_from_csv(devices, pair="dc1")
    document = inventory_document(imported, known_hosts="known_hosts", secrets_file="secrets.yaml")
    text = inventory_text(document, origin="devices.csv")
    inventory = load_inventory(text, source="inventory.yaml")
    pair = inventory.pair("dc1")
    assert (pair.primary.host, pair.secondary.host) == ("10.0.0.1", "10.0.0.5")
    assert [(f.name, f.host, f.port, f.jump) for f in pair.ftds] == [
        ("ftd-1", "10.0.0.2", 22, None),
        ("ftd-2", "10.0.0.3", 22, None),
        ("ftd-3", "10.0.0.4", 22, None),
    ]
    assert inventory.credentials["dc1-admin-2"].password == SecretRef("secret", "dc1-admin-2")
    assert (inventory.known_hosts, inventory.secrets_file) == ("known_hosts", "secrets.yaml")
    for password in ODD_PASSWORDS:
        assert password.strip() not in text
    assert yaml.safe_load(secrets_text(secrets)) == dict(
        zip(imported.credentials, ODD_PASSWORDS, strict=True)
    )


def test_the_secrets_template_has_no_value() -> None:
    assert yaml.safe_load(secrets_template(["dc1-admin"])) is None
    assert "# dc1-admin: " in secrets_template(["dc1-admin"])


# ------------------------------------------------------------------------------------------ FMC REST


def _item(i: int, name: str | None = None) -> dict[str, object]:
    return {
        "id": f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd",
        "type": "Device",
        "name": name or f"ftd-{i}",
        "hostName": f"10.1.0.{i}",
        "model": "Cisco Firepower Threat Defense for VMware",
        "sw_version": "7.2.5",
        "healthStatus": "green",
    }


def test_a_devicerecords_page_and_the_next_one() -> None:
    first = {
        "links": {"self": "https://fmc/...?offset=0&limit=2", "next": ["https://fmc/...?offset=2&limit=2"]},
        "items": [_item(1), _item(2)],
        "paging": {"offset": 0, "limit": 2, "count": 3, "pages": 2, "next": ["https://fmc/...?offset=2"]},
    }
    page = fmc_rest.parse_devicerecords(first)
    assert [(r.name, r.host) for r in page.records] == [("ftd-1", "10.1.0.1"), ("ftd-2", "10.1.0.2")]
    assert (page.offset, page.count, page.has_next) == (0, 3, True)
    last = {"items": [_item(3)], "paging": {"offset": 2, "limit": 2, "count": 3, "pages": 2}}
    assert not fmc_rest.parse_devicerecords(last).has_next


def test_an_fmc_with_no_device_answers_without_items() -> None:
    empty = {"links": {"self": "x"}, "paging": {"offset": 0, "limit": 0, "count": 0, "pages": 0}}
    page = fmc_rest.parse_devicerecords(empty)
    assert (page.records, page.has_next) == ((), False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not a JSON object"),
        ({"items": []}, "no paging object"),
        ({"items": {}, "paging": {}}, "items is not a list"),
        ({"items": [{"id": "x", "name": "n"}], "paging": {}}, r"items\[0\].hostName is missing"),
        ({"items": [], "paging": {"offset": "0", "count": 0}}, "paging.offset is missing or not a number"),
    ],
)
def test_a_page_without_what_the_import_needs_names_the_field(data: object, message: str) -> None:
    with pytest.raises(fmc_rest.ApiShapeError, match=message):
        fmc_rest.parse_devicerecords(data)


def test_tokens_refresh_three_times_then_generate() -> None:
    headers = {"x-auth-access-token": "a", "x-auth-refresh-token": "r", "domain_uuid": "d"}
    token = fmc_rest.token_from_headers(headers)
    assert "'a'" not in repr(token) and "'r'" not in repr(token)
    assert fmc_rest.next_auth(None) == "generate"
    assert [fmc_rest.next_auth(fmc_rest.Token("a", "r", "d", n)) for n in range(5)] == [
        "refresh", "refresh", "refresh", "generate", "generate",
    ]  # fmt: skip
    with pytest.raises(fmc_rest.ApiShapeError, match="DOMAIN_UUID"):
        fmc_rest.token_from_headers({"x-auth-access-token": "a"})


def test_waits_honour_retry_after_else_back_off() -> None:
    assert fmc_rest.retry_delay(1, "7") == 7.0
    assert fmc_rest.retry_delay(1, "600") == fmc_rest.BACKOFF_CAP_S
    assert [fmc_rest.retry_delay(n, None) for n in (1, 2, 3, 9)] == [2.0, 4.0, 8.0, 60.0]
    assert fmc_rest.retry_delay(2, "Wed, 21 Oct 2026 07:28:00 GMT") == 4.0


def test_listed_names_are_fitted_to_the_inventory_and_kept_unique() -> None:
    records = [
        fmc_rest.parse_devicerecords({"items": [item], "paging": {"offset": 0, "count": 1}}).records[0]
        for item in (_item(1, "FTD 1 / Paris"), _item(2, "fmc-primary"), _item(3, "FTD-1-Paris"), _item(4))
    ]
    listed = fmc_rest.inventory_ftds(records, taken=["fmc-primary", "fmc-secondary"])
    assert [(f.name, f.renamed_from) for f in listed] == [
        ("FTD-1-Paris", "FTD 1 / Paris"),
        ("fmc-primary-2", "fmc-primary"),
        ("FTD-1-Paris-2", "FTD-1-Paris"),
        ("ftd-4", None),
    ]
    assert listed[0].uuid == "00000001-aaaa-bbbb-cccc-dddddddddddd"
