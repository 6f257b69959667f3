"""Push rounds counted in the database, and a regeneration claim that outlives a dead holder.

Revision ID: 0002
Revises: 0001
Created: 2026-11-28

Written out in full (no imports from pipeline.store), like 0001. Only ADD/DROP COLUMN and new tables: on
SQLite a table rebuilt by batch mode is dropped first, and with foreign keys on, dropping `renewal_fmc` would
delete every step and artifact of every renewal (ON DELETE CASCADE). SQLite >= 3.35 drops columns in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def _renewal_fmc() -> None:
    op.add_column("renewal_fmc", sa.Column("regen_taken_at_utc", UTC_DATETIME, nullable=True))
    for name in ("push_round", "verify_round"):
        op.add_column(
            "renewal_fmc", sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    # A claim made before this revision was taken by its first claimer, when it was made.
    op.execute("UPDATE renewal_fmc SET regen_taken_at_utc = regen_claimed_at_utc")


def _push_slot() -> None:
    op.create_table(
        "push_slot",
        sa.Column("renewal_id", sa.String(36), nullable=False),
        sa.Column("fmc", sa.String(100), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("settled_at_utc", UTC_DATETIME, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.CheckConstraint("outcome IN ('succeeded', 'skipped', 'failed')", name="ck_push_slot_outcome"),
        sa.CheckConstraint(
            "(settled_at_utc IS NULL AND outcome IS NULL) "
            "OR (settled_at_utc IS NOT NULL AND outcome IS NOT NULL)",
            name="ck_push_slot_settled",
        ),
        sa.CheckConstraint("round >= 1", name="ck_push_slot_round"),
        sa.ForeignKeyConstraint(
            ["renewal_id", "fmc"],
            ["renewal_fmc.renewal_id", "renewal_fmc.fmc"],
            name="fk_push_slot_renewal_id_fmc_renewal_fmc",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("renewal_id", "fmc", "round", "device", name="pk_push_slot"),
    )


def upgrade() -> None:
    _renewal_fmc()
    _push_slot()


def downgrade() -> None:
    op.drop_table("push_slot")
    for name in ("verify_round", "push_round", "regen_taken_at_utc"):
        op.drop_column("renewal_fmc", name)
