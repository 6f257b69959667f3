"""What every operator's act checks before it writes anything, and how it reaches the database and the broker.

Shared by the commands (`sftrenew.renewals`, `.approvals`, `.restoring`), the acts behind them
(`sftrenew.actions`) and the renewal page (`sftrenew.web`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.engine import Engine

from pipeline import store
from pipeline.devices.known_hosts import check_known_hosts
from pipeline.errors import ConfigError
from pipeline.inventory import Fmc, FmcPair, Ftd, Inventory
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import Settings
from pipeline.store.checks import check_database
from workers.app import make_celery


def inventory_of(settings: Settings) -> Inventory:
    if settings.inventory is None:
        raise ConfigError("no inventory: set SFTRENEW_INVENTORY to the inventory file (docs/inventory.md)")
    return read_inventory(settings.inventory)


def check_devices(settings: Settings, inventory: Inventory, pairs: Iterable[FmcPair]) -> None:
    """What every session to the pairs' devices will need, checked before anything is written: each
    credential's password resolves (environment or a private secrets file), and the known_hosts file is
    there and readable (or trust on first use will make it)."""
    resolver = SecretResolver(inventory, os.environ)
    for pair in pairs:
        devices: list[Fmc | Ftd] = [*pair.fmcs, *pair.ftds]
        for device in devices:
            resolver.password(device.credential)
            if isinstance(device, Ftd) and device.jump is not None:
                resolver.password(inventory.jump_servers[device.jump].credential)
    known_hosts = settings.ssh.known_hosts or Path(inventory.known_hosts)
    check_known_hosts(known_hosts, tofu=settings.ssh.trust_on_first_use)


def engine_of(settings: Settings) -> Engine:
    """The database, checked first: reachable and holding sftrenew's tables (only `sftrenew migrate`, the
    worker and the demo create them), then brought to the newest schema."""
    check_database(settings)
    engine = store.make_engine(settings)
    store.migrate(engine)
    return engine


def celery_app(settings: Settings) -> None:

    make_celery(settings).set_default()
