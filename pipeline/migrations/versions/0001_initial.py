"""The store's first schema: renewals, their FMCs, step runs and artifacts.

Revision ID: 0001
Revises:
Created: 2026-11-27

Written out in full (no imports from pipeline.store): a revision is history and must not change when the
models do. `UtcDateTime` is stored as a plain `DateTime(timezone=True)`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _fmc_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["renewal_id", "fmc"],
        ["renewal_fmc.renewal_id", "renewal_fmc.fmc"],
        name=f"fk_{table}_renewal_id_fmc_renewal_fmc",
        ondelete="CASCADE",
    )


def _renewal() -> None:
    active, finished = ("queued", "running"), ("succeeded", "failed", "partial")
    op.create_table(
        "renewal",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("pair", sa.String(100), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_at_utc", UTC_DATETIME, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("finished_at_utc", UTC_DATETIME, nullable=True),
        sa.Column("active_pair", sa.String(100), nullable=True),
        sa.Column("last_progress_utc", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(_in("state", active + finished), name="ck_renewal_state"),
        sa.CheckConstraint(
            f"({_in('state', active)} AND active_pair = pair) "
            f"OR ({_in('state', finished)} AND active_pair IS NULL)",
            name="ck_renewal_active_pair",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_renewal"),
        sa.UniqueConstraint("active_pair", name="uq_renewal_active_pair"),
    )
    op.create_index("ix_renewal_pair_requested_at_utc", "renewal", ["pair", "requested_at_utc"])


def _renewal_fmc() -> None:
    op.create_table(
        "renewal_fmc",
        sa.Column("renewal_id", sa.String(36), nullable=False),
        sa.Column("fmc", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fmc_uuid", sa.String(64), nullable=True),
        sa.Column("ca_before_sha256", sa.String(64), nullable=True),
        sa.Column("ca_after_sha256", sa.String(64), nullable=True),
        sa.Column("regen_token", sa.String(200), nullable=True),
        sa.Column("regen_claimed_at_utc", UTC_DATETIME, nullable=True),
        sa.Column("regen_done_at_utc", UTC_DATETIME, nullable=True),
        sa.CheckConstraint(_in("role", ("primary", "secondary")), name="ck_renewal_fmc_role"),
        sa.CheckConstraint(
            _in("state", ("pending", "running", "succeeded", "failed", "partial")),
            name="ck_renewal_fmc_state",
        ),
        sa.ForeignKeyConstraint(
            ["renewal_id"], ["renewal.id"], name="fk_renewal_fmc_renewal_id_renewal", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("renewal_id", "fmc", name="pk_renewal_fmc"),
    )


def _step_run() -> None:
    op.create_table(
        "step_run",
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
            _in("step", ("backup", "validate", "regenerate", "push", "verify")), name="ck_step_run_step"
        ),
        sa.CheckConstraint(
            _in("state", ("started", "succeeded", "failed", "skipped", "retrying")), name="ck_step_run_state"
        ),
        sa.CheckConstraint("attempt >= 1", name="ck_step_run_attempt"),
        _fmc_fk("step_run"),
        sa.PrimaryKeyConstraint("id", name="pk_step_run"),
    )
    op.create_index("ix_step_run_renewal_id_device_step", "step_run", ["renewal_id", "device", "step"])
    op.create_index(
        "uq_step_run_attempt",
        "step_run",
        ["renewal_id", "fmc", sa.text("coalesce(device, '')"), "step", "attempt"],
        unique=True,
    )


def _artifact() -> None:
    op.create_table(
        "artifact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("renewal_id", sa.String(36), nullable=False),
        sa.Column("fmc", sa.String(100), nullable=False),
        sa.Column("device", sa.String(100), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("secret", sa.Boolean(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_utc", UTC_DATETIME, nullable=False),
        _fmc_fk("artifact"),
        sa.PrimaryKeyConstraint("id", name="pk_artifact"),
    )
    op.create_index("ix_artifact_renewal_id_fmc_kind", "artifact", ["renewal_id", "fmc", "kind"])


def upgrade() -> None:
    _renewal()
    _renewal_fmc()
    _step_run()
    _artifact()


def downgrade() -> None:
    for table in ("artifact", "step_run", "renewal_fmc", "renewal"):
        op.drop_table(table)
