"""What a task needs besides its arguments: settings, the database, the inventory and sessions to devices.

Built once per worker process from the settings the Celery app was made with (`workers.app.make_celery`), so
tasks stay thin: load by id, open a session, call the step, record the outcome.

The inventory is read once and kept while its file stays the same (same modification time and size): an
operator who edits it (a fixed route, a new jump server, an FTD's UUID) does not have to restart the workers,
and `sftrenew retry` after such a fix uses it. When the file changes, the session factories built from the
old inventory (routes, hosts, credentials) are dropped with it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from celery import Celery, current_app
from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline import store
from pipeline.devices.factory import SessionFactory
from pipeline.errors import ConfigError
from pipeline.flow import RetryPolicy
from pipeline.inventory import FmcPair, Inventory
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import Settings
from pipeline.store import Renewal

#: What identifies a version of the inventory file: its modification time (ns) and size.
FileStamp = tuple[int, int]


@dataclass
class Context:
    settings: Settings
    _factories: dict[str, tuple[SessionFactory, SecretResolver]] = field(default_factory=dict)
    _inventory: tuple[FileStamp, Inventory] | None = None
    #: Tasks run in a threads pool: one reload at a time, and no factory built from a half-replaced cache.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @cached_property
    def engine(self) -> Engine:
        return store.make_engine(self.settings)

    @contextmanager
    def db(self) -> Iterator[Session]:
        with store.open_session(self.engine) as session:
            yield session

    def inventory(self) -> Inventory:
        """The inventory, read again when its file changed (modification time or size) since the last read;
        the session factories built from the old one are dropped then."""
        with self._lock:
            return self._current()

    def _current(self) -> Inventory:
        path = self.settings.inventory
        if path is None:
            raise ConfigError(
                "no inventory: set SFTRENEW_INVENTORY to the inventory file (docs/inventory.md)"
            )
        try:
            stat = os.stat(path)
        except OSError:
            stamp = None  # read_inventory says what is wrong with the path
        else:
            stamp = (stat.st_mtime_ns, stat.st_size)
        if self._inventory is None or stamp is None or self._inventory[0] != stamp:
            # Stamped before reading: a change while reading is seen as a change at the next call.
            inventory = read_inventory(path)
            self._factories.clear()
            if stamp is not None:
                self._inventory = (stamp, inventory)
            return inventory
        return self._inventory[1]

    def devices(self, pair: str) -> tuple[SessionFactory, SecretResolver]:
        """A session factory for the pair, and the resolver whose `redact` strips its passwords from text;
        built again when the inventory file changed."""
        with self._lock:
            inventory = self._current()
            if pair not in self._factories:
                resolver = SecretResolver(inventory, os.environ)
                self._factories[pair] = (SessionFactory(inventory, pair, resolver, self.settings), resolver)
            return self._factories[pair]

    def renewal(self, db: Session, renewal_id: str) -> tuple[Renewal, FmcPair]:
        """The renewal (LookupError when there is none) and its pair, as the inventory has it now."""
        row = store.renewal(session=db, renewal_id=renewal_id)
        if row is None:
            raise LookupError(f"no renewal {renewal_id}")
        return row, self.inventory().pair(row.pair)

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """The one retry policy of both runners, from the settings (`pipeline.flow.RetryPolicy.of`)."""
        return RetryPolicy.of(self.settings)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


_CONTEXTS: dict[int, Context] = {}
#: The settings of each Celery app `workers.app.make_celery` made. Kept here, not in the app's configuration:
#: a worker hands its configuration to whoever asks (`celery inspect conf`, Flower's worker page), and the
#: settings hold the database URL and the artifact key. Weak keys: an app dropped takes its entry with it.
_SETTINGS: weakref.WeakKeyDictionary[Celery, Settings] = weakref.WeakKeyDictionary()


def register_settings(app: Celery, settings: Settings) -> None:
    """Make `settings` the settings of `app`'s tasks (called by `workers.app.make_celery`)."""
    _SETTINGS[app] = settings


def settings_of(app: Celery) -> Settings | None:
    """The settings `app` was made with, or None for an app `make_celery` did not make."""
    return _SETTINGS.get(app)


def context() -> Context:
    """The context of the current Celery app (one per worker process)."""
    settings = settings_of(current_app._get_current_object())
    if settings is None:
        raise ConfigError("this Celery app was not made by workers.app.make_celery (no sftrenew settings)")
    key = id(settings)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = Context(settings)
    return _CONTEXTS[key]
