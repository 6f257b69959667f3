"""The store's schema and engine on real databases (a fresh SQLite file and a fresh PostgreSQL database per
test): made only by linear migrations that match the models, migrated once by workers starting together, and
rules the database itself keeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from subprocess import PIPE

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from pipeline import store
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.store.schema import script_directory
from pipeline.store.tables import STEP_STATES, metadata
from tests.e2e.conftest import T0, new_renewal

pytestmark = pytest.mark.e2e

TABLES = {"renewal", "renewal_fmc", "step_run", "artifact", "push_slot", "push_restart"}


def test_an_empty_database_upgrades_to_head(empty_engine: Engine) -> None:
    assert store.current_revision(empty_engine) is None
    store.migrate(empty_engine)
    assert store.current_revision(empty_engine) == script_directory().get_current_head()
    assert set(inspect(empty_engine).get_table_names()) >= TABLES


def test_migrating_again_is_a_no_op_that_keeps_rows(engine: Engine) -> None:
    with Session(engine) as session:
        renewal_id = new_renewal(session).id
    store.migrate(engine)
    with Session(engine) as session:
        assert store.renewal(session=session, renewal_id=renewal_id) is not None


MIGRATE_SCRIPT = """
import os, sys
from pipeline.settings import load_settings
from pipeline.store import make_engine, migrate
engine = make_engine(load_settings(os.environ))
engine.connect().close()
print("ready", flush=True)
sys.stdin.readline()
migrate(engine)
"""


def test_workers_starting_together_migrate_once(empty_engine: Engine) -> None:
    """Three processes (as three workers would) wait at a start line, then all migrate the empty database."""
    url = empty_engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "SFTRENEW_DATABASE_URL": url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_SCRIPT], stdin=PIPE, stdout=PIPE, stderr=PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert store.current_revision(empty_engine) == script_directory().get_current_head()


def test_the_migrations_build_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect the expression index (uq_step_run_attempt); the next test shows it works.
        warnings.filterwarnings("ignore", ".*expression-based index")
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_revision_history_is_one_line() -> None:
    scripts = script_directory()
    revisions = list(scripts.walk_revisions())
    assert len(scripts.get_heads()) == 1
    assert len(scripts.get_bases()) == 1
    for revision in revisions:
        assert not isinstance(revision.down_revision, tuple | list), f"{revision.revision} is a merge point"
        assert len(revision.nextrev) <= 1, f"{revision.revision} branches"


def test_sqlite_runs_with_wal_a_busy_timeout_and_foreign_keys(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as first, sqlite_engine.connect() as second:
        for connection in (first, second):
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_database_refuses_rows_that_break_its_rules(engine: Engine) -> None:
    with Session(engine) as session:
        rid = new_renewal(session).id
    twin_attempt = text(
        "INSERT INTO step_run (renewal_id, fmc, device, step, attempt, state, started_at_utc) "
        "VALUES (:rid, 'fmc-a', NULL, 'backup', 1, 'started', :now)"
    )
    with engine.connect() as connection:
        connection.execute(twin_attempt, {"rid": rid, "now": T0})
        with pytest.raises(IntegrityError):  # attempt 1 of the FMC's backup twice (device NULL)
            connection.execute(twin_attempt, {"rid": rid, "now": T0})
        connection.rollback()
        with pytest.raises(IntegrityError):  # a step of an FMC the renewal does not have
            connection.execute(
                text(
                    "INSERT INTO step_run (renewal_id, fmc, step, attempt, state, started_at_utc) "
                    "VALUES ('nope', 'fmc-x', 'push', 1, 'started', :now)"
                ),
                {"now": T0},
            )
        connection.rollback()
        with pytest.raises(IntegrityError):  # finished, yet holding the pair
            connection.execute(
                text(
                    "INSERT INTO renewal (id, pair, requested_by, requested_at_utc, state, active_pair, "
                    "last_progress_utc) VALUES ('r1', 'dc1', 'ops', :now, 'succeeded', 'dc1', :now)"
                ),
                {"now": T0},
            )


def test_step_states_are_the_models_and_no_other(engine: Engine) -> None:
    """compare_metadata does not compare CHECKs: insert each state the models name, and one more."""
    with Session(engine) as session:
        rid = new_renewal(session).id
    insert = text(
        "INSERT INTO step_run (renewal_id, fmc, device, step, attempt, state, started_at_utc) "
        "VALUES (:rid, 'fmc-a', 'ftd-1', 'push', :attempt, :state, :now)"
    )
    with engine.connect() as connection:
        for attempt, state in enumerate(STEP_STATES, start=1):
            connection.execute(insert, {"rid": rid, "attempt": attempt, "state": state, "now": T0})
        connection.commit()
        with pytest.raises(IntegrityError):
            connection.execute(insert, {"rid": rid, "attempt": 99, "state": "exploded", "now": T0})
    assert "refused" in STEP_STATES


@pytest.mark.parametrize(
    ("url", "problem"),
    [("mysql://u@h/db", "supports sqlite and postgresql"), ("::not a url:s3cret@", "not a database URL")],
)
def test_a_database_url_we_cannot_use_is_a_config_error(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        store.make_engine(Settings(database_url=url))
    assert "s3cret" not in str(caught.value)


def test_a_bare_postgresql_url_means_psycopg() -> None:
    engine = store.make_engine(Settings(database_url="postgresql://u:pw@127.0.0.1:1/db"))
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()
