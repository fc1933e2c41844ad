"""webhook batches: an agency's webhook may take up to ``batch_max`` deliveries in one POST (1, the
default, sends each alone as before)

Revision ID: 0029
Revises: 0024
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agency_webhooks") as batch:
        batch.add_column(sa.Column("batch_max", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("agency_webhooks") as batch:
        batch.drop_column("batch_max")
