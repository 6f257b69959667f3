"""The regeneration's intent recorded before generate_certs.pl runs, and step states for an ignored duplicate
and an interrupted attempt.

Revision ID: 0004
Revises: 0003
Created: 2026-12-02

Written out in full (no imports from pipeline.store), like 0001 to 0003.

`renewal_fmc.regen_intent_at_utc` is set (committed) by the task holding the regeneration claim just before it
runs `generate_certs.pl`: only a CA found after that can be this renewal's without being recorded (a worker
killed mid-run). A new nullable column: ADD COLUMN, never a rebuild of `renewal_fmc` (0002's docstring).

The new `ignored` and `interrupted` states change `step_run`'s CHECK: batch mode on SQLite, copying the table
as `_step_run` describes it (the expression index `uq_step_run_attempt` kept), exactly as 0003 does; on
PostgreSQL the CHECK is replaced in place. `CK_STATE` is the database's name (0003's docstring).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
STATES_0003 = ("started", "succeeded", "failed", "skipped", "retrying", "refused")
STATES_0004 = (*STATES_0003, "ignored", "interrupted")
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


def upgrade() -> None:
    op.add_column("renewal_fmc", sa.Column("regen_intent_at_utc", UTC_DATETIME, nullable=True))
    _step_states(STATES_0003, STATES_0004)


def downgrade() -> None:
    # Before 0004 an ignored duplicate was recorded as failed and an interrupted attempt stayed started.
    op.execute("UPDATE step_run SET state = 'failed' WHERE state = 'ignored'")
    op.execute("UPDATE step_run SET state = 'started' WHERE state = 'interrupted'")
    _step_states(STATES_0004, STATES_0003)
    op.drop_column("renewal_fmc", "regen_intent_at_utc")
