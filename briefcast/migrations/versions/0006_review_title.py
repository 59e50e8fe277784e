"""The brief's title, kept with its review.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``briefcast reviews`` and the editor's page name each review by its title, not only its id.
Nullable: reviews recorded before this revision have none, and neither has a brief that
could not be read (its review is recorded failed, under its file name, with the reason).
Frozen like every revision: written out here, never imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("reviews", sa.Column("title", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("title")
