"""the family's "tell it once" summary of a child, sealed with the child's summary key

Revision ID: 0026
Revises: 0023
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "child_summaries",
        sa.Column("child_id", sa.String(80), primary_key=True),
        sa.Column("household_id", sa.String(80), nullable=False),
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("shared", sa.Boolean, nullable=False),
        sa.Column("written_by", sa.String(200), nullable=False),
        sa.Column("written_role", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shared_changed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_child_summaries_household_id", "child_summaries", ["household_id"])


def downgrade() -> None:
    op.drop_index("ix_child_summaries_household_id", table_name="child_summaries")
    op.drop_table("child_summaries")
