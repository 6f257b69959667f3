"""What a peer held before a renewal first wrote its files: the copies' folder and suffix and each file's
SHA-256, on `push_restart`, so that `sftrenew restore` can check the copies before putting them back.

Revision ID: 0006
Revises: 0005
Created: 2026-12-03

Written out in full (no imports from pipeline.store), like 0001 to 0005. Five nullable columns: rows written
before them stay NULL there (restore refuses those devices, naming why).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

COLUMNS = (
    ("before_folder", 200),
    ("before_suffix", 64),
    ("before_ca_sha256", 64),
    ("before_cert_sha256", 64),
    ("before_key_sha256", 64),
)


def upgrade() -> None:
    for name, length in COLUMNS:
        op.add_column("push_restart", sa.Column(name, sa.String(length), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("push_restart") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
