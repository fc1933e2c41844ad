"""timeline change feed (for live streams) and late-arrival flag

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("timeline_entries") as batch:
        batch.add_column(sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "timeline_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("household_id", sa.String(length=80), nullable=False),
        sa.Column("child_id", sa.String(length=80), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_timeline_changes_household", "timeline_changes", ["household_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_timeline_changes_household", table_name="timeline_changes")
    op.drop_table("timeline_changes")
    with op.batch_alter_table("timeline_entries") as batch:
        batch.drop_column("late")
