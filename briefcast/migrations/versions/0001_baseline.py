"""Baseline: the schema briefcast 0.1 made with ``metadata.create_all``.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Frozen: these tables are a copy of briefcast/store.py as it was before migrations, never an
import of it, so a later change to the models cannot rewrite history. A database that
create_all made (these tables, no ``alembic_version``) is stamped at this revision by
briefcast.migrate instead of running it; any of these tables an older briefcast had not
made yet is created first, with these very definitions (:data:`metadata`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

metadata = sa.MetaData()

briefs = sa.Table(
    "briefs",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("date", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("languages", sa.String(200), nullable=False),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published", sa.Boolean, nullable=False, default=False),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200)),
    sa.Column("language", sa.String(10), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("hard_bounces", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("brief_id", sa.String(200), nullable=False),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
    sa.Column("edition", sa.String(10), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_reply", sa.Text),
    sa.Column("message_id", sa.String(400)),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("brief_id", "subscriber_id", name="uq_delivery_once"),
)


def upgrade() -> None:
    # create_all emits exactly the DDL briefcast 0.1 did (same tables, indexes, constraint
    # names); checkfirst leaves alone a table that is there already.
    metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
