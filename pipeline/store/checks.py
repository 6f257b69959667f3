"""What a command checks about the database before it writes anything: the URL, the server, the schema.

`check_database` answers in one bounded look (a few seconds at most) with a `ConfigError` that names the
thing and the fix: a malformed URL, a SQLite folder that does not exist, a login or database name the server
refuses, a database with no sftrenew tables (a mistyped SQLite path would otherwise become a new, empty
database); or a `ServiceUnreachableError` when the server does not answer. Only `sftrenew migrate` (and the
worker and the demo, which migrate first) may create the schema. No message holds a password.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.store.schema import URL_VARIABLE, database_url

#: How long a check waits for a database server (a command must answer in seconds, not minutes).
PROBE_SECONDS: Final = 5
_VERSION_TABLE = "alembic_version"


class ServiceUnreachableError(ConfigError):
    """A service a command needs (the database or the broker) does not answer: start it or fix its address."""


def shown(url: URL) -> str:
    """The URL as messages may show it: without its password."""
    return url.render_as_string(hide_password=True)


def no_schema(url: URL) -> ConfigError:
    return ConfigError(f"no sftrenew tables in {shown(url)}: run `sftrenew migrate` first")


def check_database(settings: Settings, *, create: bool = False) -> None:
    """Refuse a database the command cannot use. `create`: the command migrates (may make the schema), so
    a database without tables is fine, but it must be reachable and, for SQLite, its folder must exist."""
    url = database_url(settings)
    backend = url.get_backend_name()
    if backend == "sqlite":
        _check_sqlite(url, create=create)
    elif backend == "postgresql":
        _check_postgresql(url, create=create)
    else:
        raise ConfigError(
            f"{URL_VARIABLE} names a {backend} database; sftrenew supports sqlite and postgresql"
        )


def _check_sqlite(url: URL, *, create: bool) -> None:
    if not url.database or url.database == ":memory:" or url.query.get("uri"):
        return  # in memory, or a URI filename: nothing on disk to look at
    path = Path(url.database)
    if not path.parent.is_dir():
        raise ConfigError(
            f"the folder {path.parent} of the SQLite database in {URL_VARIABLE} does not exist; create it "
            "or fix the path"
        )
    if not path.exists():
        if create:
            return
        raise no_schema(url)
    try:
        # Read-only: a check never creates, converts or locks the file.
        with sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=PROBE_SECONDS) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_VERSION_TABLE,)
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"cannot use {path} as the SQLite database ({exc}); fix {URL_VARIABLE} or the file"
        ) from None
    if found is None and not create:
        raise no_schema(url)


def _check_postgresql(url: URL, *, create: bool) -> None:
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": PROBE_SECONDS})
    try:
        with engine.connect() as connection:
            has_schema = inspect(connection).has_table(_VERSION_TABLE) and (
                connection.execute(text("SELECT version_num FROM alembic_version")).first() is not None
            )
    except DBAPIError as exc:
        raise _postgresql_error(url, str(exc.orig)) from None
    finally:
        engine.dispose()
    if not has_schema and not create:
        raise no_schema(url)


def _postgresql_error(url: URL, message: str) -> ConfigError:
    where = f"the PostgreSQL server at {url.host or 'localhost'}:{url.port or 5432}"
    lowered = message.lower()
    if "password" in lowered or "authentication" in lowered:
        return ConfigError(
            f"{where} refused the login of {url.username or 'the default user'}; fix the user or password in "
            f"{URL_VARIABLE}"
        )
    if "database" in lowered and "does not exist" in lowered:
        return ConfigError(
            f"{where} has no database {url.database!r}; create it (createdb {url.database}) or fix the name "
            f"in {URL_VARIABLE}"
        )
    if "role" in lowered and "does not exist" in lowered:
        return ConfigError(f"{where} has no user {url.username!r}; fix the user in {URL_VARIABLE}")
    reason = "timed out" if "timeout" in lowered else "connection refused" if "refused" in lowered else None
    detail = reason or (message.strip().splitlines() or ["no answer"])[0].rsplit("failed: ", 1)[-1][:160]
    return ServiceUnreachableError(
        f"the database at {shown(url)} does not answer ({detail}); start PostgreSQL or fix the host and port "
        f"in {URL_VARIABLE}"
    )
