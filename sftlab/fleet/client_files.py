"""The files a client of the lab needs, written once the fleet is up: their presence means "ready".

`inventory.yaml` is in the product's inventory format (docs/inventory.md), but written here as plain data:
the lab never imports the product. Passwords go to a 0600 secrets file the inventory names; host keys go to
`known_hosts` (the key each device was *meant* to have: a device whose host key "changed after start" presents
another one); `lab.json` tells tests where each device's file tree is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import yaml

from sftlab.fleet.layout import write_file_atomic
from sftlab.fleet.pki import cert_pem
from sftlab.fleet.spec import FMC_NAMES, JUMP, PRIMARY, SECONDARY

if TYPE_CHECKING:
    from sftlab.fleet.running import Fleet, LabDevice

PAIR_NAME = "lab"
SITE = "lab"
#: The credentials the lab's inventory names, and the jump server's login (the secrets file holds the values).
ADMIN_CREDENTIAL = "fleet-admin"
JUMP_CREDENTIAL = "jump"
JUMP_USER = "operator"
#: Both FMCs' self-signed HTTPS certificates: what a REST client verifies them with.
REST_CA_FILE = "rest-ca.pem"


def known_hosts_line(device: LabDevice) -> str:
    key = device.known_key.export_public_key("openssh").decode().strip()
    return f"[{device.ip}]:{device.port} {key}\n"


def _entry(device: LabDevice, credential: str) -> dict[str, Any]:
    return {
        "name": device.name,
        "host": device.ip,
        "port": device.port,
        "credential": credential,
        "uuid": device.uuid,
    }


def inventory_data(fleet: Fleet) -> dict[str, Any]:
    jump = fleet.devices[JUMP]
    ftds = [d for name, d in fleet.devices.items() if name not in FMC_NAMES and name != JUMP]
    return {
        "version": 1,
        "known_hosts": "known_hosts",
        "secrets_file": "secrets.yaml",
        "credentials": {
            ADMIN_CREDENTIAL: {"username": "admin", "password": {"secret": ADMIN_CREDENTIAL}},
            JUMP_CREDENTIAL: {"username": JUMP_USER, "password": {"secret": JUMP_CREDENTIAL}},
        },
        "jump_servers": {JUMP: {"host": jump.ip, "port": jump.port, "credential": JUMP_CREDENTIAL}},
        "pairs": {
            PAIR_NAME: {
                "primary": _entry(fleet.devices[PRIMARY], ADMIN_CREDENTIAL),
                "secondary": _entry(fleet.devices[SECONDARY], ADMIN_CREDENTIAL),
                "ftds": [{**_entry(d, ADMIN_CREDENTIAL), "jump": JUMP, "site": SITE} for d in ftds],
            }
        },
    }


def lab_data(fleet: Fleet) -> dict[str, Any]:
    assert fleet.control_server is not None  # noqa: S101 - started before the files are written
    return {
        "inventory": str(fleet.inventory_path),
        "known_hosts": str(fleet.directory / "known_hosts"),
        "secrets_file": str(fleet.directory / "secrets.yaml"),
        "control_socket": str(fleet.control_server.path),
        "rest_ca_file": str(fleet.directory / REST_CA_FILE),
        "pair": PAIR_NAME,
        "devices": [
            {
                "name": d.name,
                "role": d.role,
                "uuid": d.uuid,
                "host": d.ip,
                "port": d.port,
                "root": str(d.root),
                "knobs": d.knobs.model_dump(),
                "rest_port": d.rest.port if d.rest is not None else None,
            }
            for d in fleet.devices.values()
        ],
    }


def write_client_files(fleet: Fleet) -> None:
    """Write the secrets, known_hosts, lab.json and, last, inventory.yaml."""

    directory = fleet.directory
    secrets = {ADMIN_CREDENTIAL: fleet.admin_password, JUMP_CREDENTIAL: fleet.jump_password}
    write_file_atomic(directory / "secrets.yaml", yaml.safe_dump(secrets).encode(), mode=0o600)
    lines = "".join(known_hosts_line(d) for d in fleet.devices.values())
    write_file_atomic(directory / "known_hosts", lines.encode())
    certs = [d.rest_cert for d in fleet.devices.values() if d.rest_cert is not None]
    write_file_atomic(directory / REST_CA_FILE, b"".join(cert_pem(cert) for cert in certs))
    write_file_atomic(directory / "lab.json", (json.dumps(lab_data(fleet), indent=2) + "\n").encode())
    text = "# Written by `sftrenew lab serve`: the lab fleet in sftrenew's inventory format.\n"
    text += yaml.safe_dump(inventory_data(fleet), sort_keys=False)
    write_file_atomic(fleet.inventory_path, text.encode())
