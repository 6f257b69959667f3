"""What each peer held when its push ended (so that verify need not log in to it again), and a renewal's
events: what people did to it and what the reconciler could not do.

Revision ID: 0005
Revises: 0004
Created: 2026-12-02

Written out in full (no imports from pipeline.store), like 0001 to 0004. Two new tables: `peer_held`, one row
per renewal, FMC and device, replaced by each successful push (`pipeline.store.held`); `renewal_event`, one
row per event, never changed (`pipeline.store.events`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "peer_held",
        sa.Column("renewal_id", sa.String(36), nullable=False),
        sa.Column("fmc", sa.String(100), nullable=False),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("ca_sha256", sa.String(64), nullable=True),
        sa.Column("cert_sha256", sa.String(64), nullable=True),
        sa.Column("key_matches_cert", sa.Boolean(), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("checked_at_utc", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["renewal_id", "fmc"],
            ["renewal_fmc.renewal_id", "renewal_fmc.fmc"],
            name="fk_peer_held_renewal_id_fmc_renewal_fmc",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("renewal_id", "fmc", "device", name="pk_peer_held"),
    )

    op.create_table(
        "renewal_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("renewal_id", sa.String(36), nullable=False),
        sa.Column("at_utc", UTC_DATETIME, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("who", sa.String(200), nullable=True),
        sa.Column("fmc", sa.String(100), nullable=True),
        sa.Column("device", sa.String(100), nullable=True),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(
            ["renewal_id"], ["renewal.id"], name="fk_renewal_event_renewal_id_renewal", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_renewal_event"),
    )
    op.create_index("ix_renewal_event_renewal_id", "renewal_event", ["renewal_id"])


def downgrade() -> None:
    op.drop_index("ix_renewal_event_renewal_id", table_name="renewal_event")
    op.drop_table("renewal_event")
    op.drop_table("peer_held")
