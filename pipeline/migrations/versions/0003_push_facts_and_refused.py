"""A push's write and restart recorded as facts, and a step state for a push refused before any write.

Revision ID: 0003
Revises: 0002
Created: 2026-11-29

Written out in full (no imports from pipeline.store), like 0001 and 0002.

`push_restart` is a new table. The new `refused` state changes `step_run`'s CHECK, which SQLite can only do by
rebuilding the table (batch mode: copy, drop, rename). That is safe for `step_run`, unlike `renewal_fmc`
(0002's docstring): no table refers to it, so dropping it deletes nothing else. Batch mode copies the table
as `_step_run` describes it, not as reflected: SQLite cannot reflect the expression index
`uq_step_run_attempt`, and a reflected copy would silently lose it. On PostgreSQL the CHECK is replaced in
place.

The CHECK names are the database's, which are not the ones 0001 wrote: env.py's metadata naming convention
(`ck_%(table_name)s_%(constraint_name)s`) prefixed them once more, so 0001's `ck_step_run_state` is
`ck_step_run_ck_step_run_state` in every database. `CK_STATE` and `_step_run` say so, and `op.f` keeps the
convention from prefixing them a third time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
STATES_0001 = ("started", "succeeded", "failed", "skipped", "retrying")
STATES_0003 = (*STATES_0001, "refused")
CK_STATE = "ck_step_run_ck_step_run_state"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _step_run(states: tuple[str, ...]) -> sa.Table:
    """`step_run` as the database has it since 0001, with `states` allowed: what batch mode copies on
    SQLite."""
    return sa.Table(
        "step_run",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("renewal_id", sa.String(36), nullable=False),
        sa.Column("fmc", sa.String(100), nullable=False),
        sa.Column("device", sa.String(100), nullable=True),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(100), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("task_id", sa.String(200), nullable=True),
        sa.Column("started_at_utc", UTC_DATETIME, nullable=False),
        sa.Column("finished_at_utc", UTC_DATETIME, nullable=True),
        sa.Column("error_kind", sa.String(100), nullable=True),
        sa.Column("message", sa.String(500), nullable=True),
        sa.Column("who", sa.String(200), nullable=True),
        sa.CheckConstraint(
            _in("step", ("backup", "validate", "regenerate", "push", "verify")),
            name="ck_step_run_ck_step_run_step",
        ),
        sa.CheckConstraint(_in("state", states), name=CK_STATE),
        sa.CheckConstraint("attempt >= 1", name="ck_step_run_ck_step_run_attempt"),
        sa.ForeignKeyConstraint(
            ["renewal_id", "fmc"],
            ["renewal_fmc.renewal_id", "renewal_fmc.fmc"],
            name="fk_step_run_renewal_id_fmc_renewal_fmc",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_step_run"),
        sa.Index("ix_step_run_renewal_id_device_step", "renewal_id", "device", "step"),
        sa.Index(
            "uq_step_run_attempt",
            "renewal_id",
            "fmc",
            sa.text("coalesce(device, '')"),
            "step",
            "attempt",
            unique=True,
        ),
    )


def _step_states(before: tuple[str, ...], after: tuple[str, ...]) -> None:
    with op.batch_alter_table("step_run", copy_from=_step_run(before)) as batch:
        batch.drop_constraint(op.f(CK_STATE), type_="check")
        batch.create_check_constraint(op.f(CK_STATE), _in("state", after))


def _push_restart() -> None:
    op.create_table(
        "push_restart",
        sa.Column("renewal_id", sa.String(36), nullable=False),
        sa.Column("fmc", sa.String(100), nullable=False),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("write_started_at_utc", UTC_DATETIME, nullable=False),
        sa.Column("restarted_at_utc", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["renewal_id", "fmc"],
            ["renewal_fmc.renewal_id", "renewal_fmc.fmc"],
            name="fk_push_restart_renewal_id_fmc_renewal_fmc",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("renewal_id", "fmc", "device", name="pk_push_restart"),
    )


def upgrade() -> None:
    _push_restart()
    _step_states(STATES_0001, STATES_0003)


def downgrade() -> None:
    # Before 0003 a refused push was recorded as failed; the older CHECK allows nothing else.
    op.execute("UPDATE step_run SET state = 'failed' WHERE state = 'refused'")
    _step_states(STATES_0003, STATES_0001)
    op.drop_table("push_restart")
