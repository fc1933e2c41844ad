"""sharing: consent directives, share decisions, deliveries, alerts, agency webhooks

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent_directives",
        sa.Column("directive_id", sa.String(120), primary_key=True),
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("child_id", sa.String(80), nullable=True, index=True),
        sa.Column("household_id", sa.String(80), nullable=True),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.Column("source_version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("fhir_json", sa.Text, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("made_at", TS, nullable=True),
        sa.Column("withdrawn_at", TS, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "share_decisions",
        sa.Column("decision_id", sa.String(36), primary_key=True),
        sa.Column("information_id", sa.String(36), nullable=False),
        sa.Column("information_version", sa.BigInteger, nullable=False),
        sa.Column("recipient_key", sa.String(300), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("current", sa.Boolean, nullable=False),
        sa.Column("child_id", sa.String(80), nullable=False),
        sa.Column("household_id", sa.String(80), nullable=False),
        sa.Column("record_type", sa.String(80), nullable=False),
        sa.Column("info_kind", sa.String(40), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("producer_agency_id", sa.String(120), nullable=False),
        sa.Column("producer_service", sa.String(200), nullable=False),
        sa.Column("recipient_kind", sa.String(40), nullable=False),
        sa.Column("recipient_agency_id", sa.String(120), nullable=True),
        sa.Column("recipient_service", sa.String(200), nullable=True),
        sa.Column("recipient_sector", sa.String(20), nullable=True),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("basis", sa.String(30), nullable=False),
        sa.Column("rule_id", sa.String(60), nullable=False),
        sa.Column("ruleset_version", sa.String(40), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("directive_ids", sa.Text, nullable=False),
        sa.Column("notify_family", sa.Boolean, nullable=False),
        sa.Column("requires_ig_review", sa.Boolean, nullable=False),
        sa.Column("decided_for", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("trigger", sa.String(40), nullable=False),
        sa.UniqueConstraint("information_id", "recipient_key", "information_version", "seq",
                            name="uq_share_decision"),
    )
    op.create_index("ix_share_decisions_child", "share_decisions", ["child_id", "current"])
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("decision_id", sa.String(36), nullable=False),
        sa.Column("information_id", sa.String(36), nullable=False),
        sa.Column("information_version", sa.BigInteger, nullable=False),
        sa.Column("recipient_key", sa.String(300), nullable=False),
        sa.Column("recipient_kind", sa.String(40), nullable=False),
        sa.Column("agency_id", sa.String(120), nullable=True),
        sa.Column("service", sa.String(200), nullable=True),
        sa.Column("child_id", sa.String(80), nullable=False),
        sa.Column("household_id", sa.String(80), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("why", sa.Text, nullable=True),
        sa.Column("channel", sa.String(20), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("receipt", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("queued_at", TS, nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("escalated_at", TS, nullable=True),
        sa.UniqueConstraint("information_id", "information_version", "recipient_key", "kind", name="uq_delivery"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_agency", "deliveries", ["agency_id", "created_at", "delivery_id"])
    op.create_index("ix_deliveries_child", "deliveries", ["child_id"])
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_key", sa.String(300), nullable=False, unique=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("household_id", sa.String(80), nullable=False, index=True),
        sa.Column("child_id", sa.String(80), nullable=False),
        sa.Column("to_agency_id", sa.String(120), nullable=True),
        sa.Column("to_service", sa.String(200), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
    )
    op.create_table(
        "agency_webhooks",
        sa.Column("agency_id", sa.String(120), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    op.drop_table("agency_webhooks")
    op.drop_table("alerts")
    op.drop_index("ix_deliveries_child", table_name="deliveries")
    op.drop_index("ix_deliveries_agency", table_name="deliveries")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_share_decisions_child", table_name="share_decisions")
    op.drop_table("share_decisions")
    op.drop_index("ix_consent_directives_child_id", table_name="consent_directives")
    op.drop_table("consent_directives")
