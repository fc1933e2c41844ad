"""enrolment: households, their members, coordinators' caseloads

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "households",
        sa.Column("household_id", sa.String(80), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
    )
    op.create_table(
        "household_members",
        sa.Column("member_id", sa.String(80), primary_key=True),
        sa.Column("household_id", sa.String(80), sa.ForeignKey("households.household_id"), nullable=False,
                  index=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("relationship", sa.String(40), nullable=False),
        sa.Column("parental_responsibility", sa.Boolean(), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "caseloads",
        sa.Column("coordinator_id", sa.String(120), primary_key=True),
        sa.Column("household_id", sa.String(80), sa.ForeignKey("households.household_id"), primary_key=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("caseloads")
    op.drop_table("household_members")
    op.drop_table("households")
