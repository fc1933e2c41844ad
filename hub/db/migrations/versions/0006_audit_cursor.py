"""audit cursors: how far each source of audit records has been written to the audit log

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_cursors",
        sa.Column("name", sa.String(60), primary_key=True),
        sa.Column("position", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_cursors")
