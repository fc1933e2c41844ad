"""delivery rounds: a share and a withdrawal notice may each be sent again for the same information
version and recipient when consent is withdrawn and given again (``round`` counts them)

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_constraint("uq_delivery", type_="unique")
        batch.create_unique_constraint(
            "uq_delivery", ["information_id", "information_version", "recipient_key", "kind", "round"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("uq_delivery", type_="unique")
        batch.create_unique_constraint(
            "uq_delivery", ["information_id", "information_version", "recipient_key", "kind"])
        batch.drop_column("round")
