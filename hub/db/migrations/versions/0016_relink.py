"""relink: decision and delivery keys include the child; sharing_failures

A subject linked to the wrong child and re-linked to the right one brings the same information to
another child, who is decided afresh: the unique keys of ``share_decisions`` and ``deliveries`` take
the child. ``sharing_failures`` records a child whose sharing pass failed, so the follower moves on
for every other family and retries that child later.

Revision ID: 0016
Revises: 0014
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("share_decisions") as batch:
        batch.drop_constraint("uq_share_decision", type_="unique")
        batch.create_unique_constraint(
            "uq_share_decision", ["information_id", "recipient_key", "information_version", "child_id", "seq"])
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("uq_delivery", type_="unique")
        batch.create_unique_constraint(
            "uq_delivery", ["information_id", "information_version", "recipient_key", "child_id", "kind", "round"])
    op.create_table(
        "sharing_failures",
        sa.Column("child_id", sa.String(80), primary_key=True),
        sa.Column("household_id", sa.String(80), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sharing_failures")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("uq_delivery", type_="unique")
        batch.create_unique_constraint(
            "uq_delivery", ["information_id", "information_version", "recipient_key", "kind", "round"])
    with op.batch_alter_table("share_decisions") as batch:
        batch.drop_constraint("uq_share_decision", type_="unique")
        batch.create_unique_constraint(
            "uq_share_decision", ["information_id", "recipient_key", "information_version", "seq"])
