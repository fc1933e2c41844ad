"""disclosure holds released, safeguarding overrides, a looked-after child's corporate parent

Revision ID: 0017
Revises: 0016
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("household_members") as batch:
        batch.add_column(sa.Column("corporate_parent", sa.String(120), nullable=True))
    op.create_table(
        "disclosure_releases",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("household_id", sa.String(80), nullable=False),
        sa.Column("child_id", sa.String(80), nullable=False),
        sa.Column("released_by", sa.String(200), nullable=False),
        sa.Column("released_role", sa.String(40), nullable=False),
        sa.Column("agency_id", sa.String(120), nullable=True),
        sa.Column("released_at", TS, nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_disclosure_releases_child_id", "disclosure_releases", ["child_id"])
    op.create_table(
        "safeguarding_overrides",
        sa.Column("override_id", sa.String(36), primary_key=True),
        sa.Column("household_id", sa.String(80), nullable=False),
        sa.Column("child_id", sa.String(80), nullable=False),
        sa.Column("made_by", sa.String(200), nullable=False),
        sa.Column("made_role", sa.String(40), nullable=False),
        sa.Column("recipient_agency_id", sa.String(120), nullable=False),
        sa.Column("recipient_service", sa.String(200), nullable=True),
        sa.Column("categories", sa.Text(), nullable=True),
        sa.Column("information_ids", sa.Text(), nullable=True),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("tell_family", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_safeguarding_overrides_child_id", "safeguarding_overrides", ["child_id"])


def downgrade() -> None:
    op.drop_index("ix_safeguarding_overrides_child_id", "safeguarding_overrides")
    op.drop_table("safeguarding_overrides")
    op.drop_index("ix_disclosure_releases_child_id", "disclosure_releases")
    op.drop_table("disclosure_releases")
    with op.batch_alter_table("household_members") as batch:
        batch.drop_column("corporate_parent")
