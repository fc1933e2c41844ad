"""stream cursors: how far a follower of the change feed (the sharing step) has read, and who holds it;
a child member's recorded competence (Gillick) to make their own consent decisions before 16

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_cursors",
        sa.Column("name", sa.String(60), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("owner", sa.String(120), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("household_members") as batch:
        batch.add_column(sa.Column("competent_from", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("household_members") as batch:
        batch.drop_column("competent_from")
    op.drop_table("stream_cursors")
