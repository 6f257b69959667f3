"""What a task needs besides its arguments: settings, the database, the inventory and sessions to devices.

Built once per worker process from the settings the Celery app was made with (`workers.app.make_celery`), so
tasks stay thin: load by id, open a session, call the step, record the outcome.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from celery import current_app
from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline import store
from pipeline.devices.factory import SessionFactory
from pipeline.errors import ConfigError
from pipeline.inventory import Inventory
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import Settings


@dataclass
class Context:
    settings: Settings
    _factories: dict[str, tuple[SessionFactory, SecretResolver]] = field(default_factory=dict)

    @cached_property
    def engine(self) -> Engine:
        return store.make_engine(self.settings)

    @contextmanager
    def db(self) -> Iterator[Session]:
        with store.open_session(self.engine) as session:
            yield session

    def inventory(self) -> Inventory:
        if self.settings.inventory is None:
            raise ConfigError(
                "no inventory: set SFTRENEW_INVENTORY to the inventory file (docs/inventory.md)"
            )
        return read_inventory(self.settings.inventory)

    def devices(self, pair: str) -> tuple[SessionFactory, SecretResolver]:
        """A session factory for the pair, and the resolver whose `redact` strips its passwords from text."""
        if pair not in self._factories:
            inventory = self.inventory()
            resolver = SecretResolver(inventory, os.environ)
            self._factories[pair] = (SessionFactory(inventory, pair, resolver, self.settings), resolver)
        return self._factories[pair]

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


_CONTEXTS: dict[int, Context] = {}


def context() -> Context:
    """The context of the current Celery app (one per worker process)."""
    settings = current_app.conf.get("sftrenew_settings")
    if not isinstance(settings, Settings):
        raise ConfigError("this Celery app was not made by workers.app.make_celery (no sftrenew settings)")
    key = id(settings)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = Context(settings)
    return _CONTEXTS[key]
