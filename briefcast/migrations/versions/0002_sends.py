"""The general send ledger: one row per part a channel sends (briefcast.send_ledger).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Keyed by (brief, channel, target, part): a second row, and so a second send of one part,
is impossible. Frozen like every revision: written out here, never imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "sends",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("brief_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("part", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("remote_id", sa.Text),
        sa.Column("last_reply", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("brief_id", "channel", "target", "part", name="uq_send_once"),
    )


def downgrade() -> None:
    op.drop_table("sends")
