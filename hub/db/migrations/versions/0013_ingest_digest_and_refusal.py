"""ingest log: a keyed digest of each version's content (a resend with other content is a conflict),
and when the broker refused a logged record for good (dead-lettered; the outbox relay moves on)

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("ingest_log") as batch:
        batch.add_column(sa.Column("content_digest", sa.String(40), nullable=True))
        batch.add_column(sa.Column("refused_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_log") as batch:
        batch.drop_column("refused_at")
        batch.drop_column("content_digest")
