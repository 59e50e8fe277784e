"""The brief's bytes as previewed, kept with its review.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

The send and its batches build the brief from these bytes, not from the file the editor
previewed: a worker on another machine has no such file, and needs no shared storage.
Nullable: reviews recorded before this revision keep building from their file. Frozen like
every revision: written out here, never imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("reviews", sa.Column("brief", sa.LargeBinary))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("brief")
