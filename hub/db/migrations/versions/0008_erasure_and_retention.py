"""erasure and retention: per-subject data keys, the erasure register, ingest-log agency and erased marks

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subject_keys",
        sa.Column("subject", sa.String(80), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("kek_id", sa.String(16), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("shredded_at", TS, nullable=True),
    )
    op.create_table(
        "erased_subjects",
        sa.Column("subject", sa.String(80), primary_key=True),
        sa.Column("erased_at", TS, nullable=False),
        sa.Column("erasure_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "erasures",
        sa.Column("erasure_id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("household_id", sa.String(80), nullable=True),
        sa.Column("member_id", sa.String(80), nullable=True, index=True),
        sa.Column("subjects", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_role", sa.String(120), nullable=False),
        sa.Column("erased_at", TS, nullable=False),
        sa.Column("audit_seq", sa.BigInteger, nullable=True),
    )
    with op.batch_alter_table("ingest_log") as batch:
        batch.add_column(sa.Column("agency_id", sa.String(120), nullable=True))
        batch.add_column(sa.Column("erased_at", TS, nullable=True))
    op.create_index("ix_ingest_key", "ingest_log", ["key"])
    op.create_index("ix_ingest_agency_time", "ingest_log", ["agency_id", "occurred_at"])
    # events accepted before this revision: their producing agency as the timeline projected it
    op.execute(sa.text(
        "update ingest_log set agency_id = (select t.agency_id from timeline_entries t "
        "where t.event_id = ingest_log.event_id) where agency_id is null"))


def downgrade() -> None:
    op.drop_index("ix_ingest_agency_time", table_name="ingest_log")
    op.drop_index("ix_ingest_key", table_name="ingest_log")
    with op.batch_alter_table("ingest_log") as batch:
        batch.drop_column("erased_at")
        batch.drop_column("agency_id")
    op.drop_table("erasures")
    op.drop_table("erased_subjects")
    op.drop_table("subject_keys")
