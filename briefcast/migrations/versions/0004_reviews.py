"""The editor's approvals: one row per brief waiting for, or given, approval.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A review is the Prefect flow run that wrote a brief's previews and waits (suspended) for the
editor: ``digest`` is what was previewed (``briefcast.reviews.digest``), an approval that
carries another digest is refused. Editors (``briefcast editors``) log in to the editor's
pages of ``briefcast serve``; a session is stored by the digest of its cookie only. Frozen
like every revision: written out here, never imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("flow_run_id", sa.String(64), nullable=False),
        sa.Column("brief_id", sa.String(200), nullable=False, index=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("preview", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("approved_by", sa.String(200)),
        sa.Column("send_at", sa.DateTime(timezone=True)),
        sa.Column("send_flow_run_id", sa.String(64)),
        sa.Column("detail", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("flow_run_id", name="uq_review_flow_run"),
    )
    op.create_table(
        "editors",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", name="uq_editor_name"),
    )
    op.create_table(
        "editor_sessions",
        sa.Column("id", sa.String(64), primary_key=True),  # sha256 of the cookie's token
        sa.Column("editor_id", sa.Integer, sa.ForeignKey("editors.id"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("editor_sessions")
    op.drop_table("editors")
    op.drop_table("reviews")
