"""`sftrenew inventory check`: load an inventory with the product's own loader and say what it holds.

Pairs, FMCs, FTDs with their routes (direct, then the jump server), jump servers; whether each credential's
password is found (never its value: a missing one is named with the fix) and whether the known_hosts file
is there. Exit 0 when everything is, 2 when something is missing or the file does not load.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.inventory import Inventory
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import Settings

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def run(args: argparse.Namespace, settings: Settings) -> int:
    path = args.inventory or settings.inventory
    if path is None:
        raise ConfigError("no inventory: give --inventory PATH or set SFTRENEW_INVENTORY")
    inventory = read_inventory(path)
    print(
        f"inventory {path}: {len(inventory.pairs)} pair(s), {len(inventory.credentials)} credential(s), "
        f"{len(inventory.jump_servers)} jump server(s)"
    )
    for line in _device_lines(inventory):
        print(line)
    problems = _secret_lines(inventory) + _known_hosts_lines(inventory, settings)
    if problems:
        print(f"{problems} problem(s): fix them before `sftrenew plan`")
        return EXIT_BAD_INPUT
    print("ok: every password is found and the known_hosts file is there")
    return EXIT_OK


def _device_lines(inventory: Inventory) -> list[str]:
    lines: list[str] = []
    for pair in inventory.pairs.values():
        lines.append(f"pair {pair.name}: {len(pair.ftds)} FTD(s)")
        for fmc in pair.fmcs:
            lines.append(
                f"  FMC {fmc.role:<9} {fmc.name}  {fmc.host}:{fmc.port}  credential {fmc.credential}"
            )
        for ftd in pair.ftds:
            route = "direct"
            if ftd.jump is not None:
                jump = inventory.jump_servers[ftd.jump]
                route += f", then via {ftd.jump} ({jump.host}:{jump.port})"
            site = f"  site {ftd.site}" if ftd.site else ""
            lines.append(
                f"  FTD {ftd.name}  {ftd.host}:{ftd.port}  routes: {route}  credential {ftd.credential}{site}"
            )
    for name, jump in inventory.jump_servers.items():
        lines.append(f"jump server {name}  {jump.host}:{jump.port}  credential {jump.credential}")
    return lines


def _secret_lines(inventory: Inventory) -> int:
    """Print whether each credential's password is found (never the value); the number missing."""
    resolver = SecretResolver(inventory, os.environ)
    missing = 0
    print("credentials:")
    for name, credential in inventory.credentials.items():
        ref = credential.password
        where = (
            f"variable {ref.key}" if ref.kind == "env" else f"secret '{ref.key}' in {inventory.secrets_file}"
        )
        try:
            resolver.password(name)
        except ConfigError as exc:
            missing += 1
            print(f"  {name} (user {credential.username}): {where}: MISSING: {exc}")
        else:
            print(f"  {name} (user {credential.username}): {where}: found")
    return missing


def _known_hosts_lines(inventory: Inventory, settings: Settings) -> int:
    path = settings.ssh.known_hosts or Path(inventory.known_hosts)
    if path.is_file():
        keys = sum(
            1 for line in path.read_text(errors="replace").splitlines() if line.strip()[:1] not in ("", "#")
        )
        print(f"known_hosts {path}: {keys} key line(s)")
        return 0
    if settings.ssh.trust_on_first_use:
        print(f"known_hosts {path}: not there yet; trust on first use is on, so it will be made")
        return 0
    print(f"known_hosts {path}: MISSING: add each device's key (`ssh-keyscan -p PORT HOST >> {path}`)")
    return 1
