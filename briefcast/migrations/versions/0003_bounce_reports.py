"""Late bounces and complaints: each report processed once (``briefcast bounces fetch``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-15

One row per report (a DSN or an ARF complaint) that changed the ledger, keyed by the report's
own Message-ID (or a digest of it): the same report read twice (a move that failed, a
mailbox that delivered it again) is recognised and counted once. Frozen like every revision:
written out here, never imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "bounce_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("report_key", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id")),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id")),
        sa.Column("detail", sa.Text),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("report_key", name="uq_bounce_report_once"),
    )


def downgrade() -> None:
    op.drop_table("bounce_reports")
