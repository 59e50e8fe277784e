"""Which run holds each delivery row's claim.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A run claims a row (``queued``/``deferred`` to ``sending``) with an UPDATE that succeeds only
if the row is still free, and writes its own random claim id with it; its outcome for the row
lands only while the claim is still its own. So exactly-once holds in the database, whatever
batch ranges or locks two runs hold. Nullable: rows written before this revision, and rows
never claimed, have none. Frozen like every revision: written out here, never imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("claim", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claim")
