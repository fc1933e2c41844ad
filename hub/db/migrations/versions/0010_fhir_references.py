"""FHIR references between requests: each agency's Patients (as pseudonyms), Practitioners,
Organizations and services by resource type and id

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fhir_references",
        sa.Column("agency", sa.String(200), primary_key=True),
        sa.Column("resource_type", sa.String(40), primary_key=True),
        sa.Column("resource_id", sa.String(200), primary_key=True),
        sa.Column("subject", sa.String(80), nullable=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_fhir_references_subject", "fhir_references", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_fhir_references_subject", table_name="fhir_references")
    op.drop_table("fhir_references")
