"""The engine and the schema: `make_engine(settings)` and `migrate(engine)`, the only way tables come to be.

SQLite (the demo's default) gets what concurrent workers need: WAL, a busy timeout instead of "database is
locked", foreign keys enforced, and connections usable from the worker's threads. PostgreSQL gets a pool that
checks connections before use (a database restart must not fail the next task).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.exc import ArgumentError
from sqlmodel import Session

from pipeline.errors import ConfigError
from pipeline.settings import Settings

URL_VARIABLE = "SFTRENEW_DATABASE_URL"
#: Alembic finds its scripts as package resources, so an installed wheel migrates like a checkout.
SCRIPT_LOCATION = "pipeline:migrations"
#: How long a SQLite writer waits for another before giving up.
SQLITE_BUSY_SECONDS: Final = 30.0
#: Serialises `migrate` across machines on PostgreSQL (workers may all start at once); any fixed number works.
PG_MIGRATE_LOCK: Final = 0x5F7E_0001
#: Alembic runs `env.py` through module-level proxies (`alembic.context`, `alembic.op`): one run per process.
_IN_PROCESS = threading.Lock()


def database_url(settings: Settings) -> URL:
    """The settings' URL, with bare `postgresql://`/`postgres://` meaning the psycopg 3 driver we ship."""
    try:
        url = make_url(settings.database_url.get_secret_value())
    except ArgumentError:
        # The URL may hold a password: the message names the variable, not the value.
        raise ConfigError(
            f"{URL_VARIABLE} is not a database URL; use sqlite:///path/to/sftrenew.db or "
            "postgresql://user@host:5432/dbname"
        ) from None
    if url.drivername in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(settings: Settings) -> Engine:
    """An engine for the settings' database; a URL for another kind of database is a ConfigError."""
    url = database_url(settings)
    backend = url.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise ConfigError(f"{URL_VARIABLE} names a {backend} database; sftrenew supports sqlite and postgresql")


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_SECONDS * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _wal(cursor)
    finally:
        cursor.close()


def _wal(cursor: DBAPICursor) -> None:
    """WAL is a property of the database file: set it once. Switching needs a moment with no other writer,
    and SQLite answers "database is locked" at once, without waiting out the busy timeout, while another
    process (a worker migrating at start-up, say) writes; so wait here."""
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        cursor.execute("PRAGMA journal_mode")
        row = cursor.fetchone()
        if row is not None and str(row[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an ini file; `connection` is the one `env.py` migrates over."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to the newest schema (or up to `revision`: a test of an upgrade starts from an
    older one); a no-op when it is there already. Safe to run from several processes at once: they take turns
    (an advisory lock on PostgreSQL, an immediate transaction on SQLite), and whoever comes second finds
    nothing to do."""
    with _IN_PROCESS, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATE_LOCK})
        elif connection.dialect.name == "sqlite":
            # The driver opens transactions lazily (before DML only); take the write lock for the whole
            # upgrade, DDL included, so a second process waits instead of creating the same tables.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision a database is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def open_session(engine: Engine) -> Session:
    """A session for the store's callers. Every writer commits before it returns, and callers go on using
    the rows they read; with SQLAlchemy's default (expire on commit) those rows would reload lazily, or fail
    once the session is closed, so commits here leave them as they were read."""
    return Session(engine, expire_on_commit=False)
