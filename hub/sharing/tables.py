"""The sharing tables, on the hub's shared metadata (created by migration 0005).

* ``consent_directives`` — one row per consent directive (FHIR R4 Consent JSON as received), resolved
  to the hub child through ``identity_links``; ``status`` active / withdrawn / invalid.
* ``share_decisions`` — one row per (information event id, information version, recipient key, seq):
  the consent engine's decision with its basis, rule, rule-set version and reasons. ``seq`` 0 is the
  first decision; a re-decision after a consent change adds ``seq + 1`` and clears ``current`` on the
  older row, so the history stays auditable.
* ``deliveries`` — one row per (information, version, recipient, kind, round): ``kind`` share or
  withdrawal_notice; ``state`` withheld → queued → delivered → acknowledged, or cancelled / failed.
  ``round`` (migration 0009) counts the rows of one information version and recipient across both
  kinds: a notice after a delivered share takes the next round, and so does a share given again
  after a notice (consent withdrawn, then given again). The unique key is what makes each
  retroactive share or withdrawal notice happen exactly once.
* ``alerts`` — coordinator alerts (unacknowledged delivery, readiness before an appointment,
  delivery failed) and report requests to producing services, once per ``alert_key``.
* ``agency_webhooks`` — agency id → webhook URL and shared secret (``HUB_WEBHOOKS_FILE`` may add more).
"""

from __future__ import annotations

import sqlalchemy as sa

from hub.db.store import TS, metadata

consent_directives = sa.Table(
    "consent_directives", metadata,
    sa.Column("directive_id", sa.String(120), primary_key=True),
    sa.Column("subject", sa.String(80), nullable=False),
    sa.Column("child_id", sa.String(80), nullable=True, index=True),
    sa.Column("household_id", sa.String(80), nullable=True),
    sa.Column("event_id", sa.String(36), nullable=True),
    sa.Column("source_version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("fhir_json", sa.Text, nullable=True),
    sa.Column("status", sa.String(20), nullable=False),  # active | withdrawn | invalid
    sa.Column("made_at", TS, nullable=True),
    sa.Column("withdrawn_at", TS, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
)

share_decisions = sa.Table(
    "share_decisions", metadata,
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
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list
    sa.Column("directive_ids", sa.Text, nullable=False),  # JSON list
    sa.Column("notify_family", sa.Boolean, nullable=False),
    sa.Column("requires_ig_review", sa.Boolean, nullable=False),
    sa.Column("decided_for", TS, nullable=False),  # the event-time side of decide_strictest
    sa.Column("decided_at", TS, nullable=False),
    sa.Column("trigger", sa.String(40), nullable=False),  # event | consent_granted | consent_withdrawn | ...
    sa.UniqueConstraint("information_id", "recipient_key", "information_version", "seq", name="uq_share_decision"),
)
sa.Index("ix_share_decisions_child", share_decisions.c.child_id, share_decisions.c.current)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("delivery_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # share | withdrawal_notice
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
    sa.Column("channel", sa.String(20), nullable=True),  # webhook | inbox | family_view
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", TS, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("receipt", sa.Text, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("queued_at", TS, nullable=True),
    sa.Column("delivered_at", TS, nullable=True),
    sa.Column("acknowledged_at", TS, nullable=True),
    sa.Column("closed_at", TS, nullable=True),  # cancelled or failed
    sa.Column("escalated_at", TS, nullable=True),
    sa.Column("round", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("information_id", "information_version", "recipient_key", "kind", "round", name="uq_delivery"),
)
sa.Index("ix_deliveries_due", deliveries.c.state, deliveries.c.next_attempt_at)
sa.Index("ix_deliveries_agency", deliveries.c.agency_id, deliveries.c.created_at, deliveries.c.delivery_id)
sa.Index("ix_deliveries_child", deliveries.c.child_id)



def latest_share(decisions: sa.Table) -> sa.ColumnElement[bool]:
    """Join condition: the latest round of the share delivery that follows a ``share_decisions`` row."""
    dl, later = deliveries.c, deliveries.alias("later_round").c
    return sa.and_(
        dl.information_id == decisions.c.information_id, dl.information_version == decisions.c.information_version,
        dl.recipient_key == decisions.c.recipient_key, dl.kind == "share",
        ~sa.exists().where(later.information_id == dl.information_id,
                           later.information_version == dl.information_version,
                           later.recipient_key == dl.recipient_key, later.kind == "share", later.round > dl.round))


alerts = sa.Table(
    "alerts", metadata,
    sa.Column("alert_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_key", sa.String(300), nullable=False, unique=True),
    sa.Column("kind", sa.String(30), nullable=False),  # ack_overdue | readiness | report_request | delivery_failed
    sa.Column("household_id", sa.String(80), nullable=False, index=True),
    sa.Column("child_id", sa.String(80), nullable=False),
    sa.Column("to_agency_id", sa.String(120), nullable=True),
    sa.Column("to_service", sa.String(200), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # JSON
    sa.Column("created_at", TS, nullable=False),
    sa.Column("resolved_at", TS, nullable=True),
)

agency_webhooks = sa.Table(
    "agency_webhooks", metadata,
    sa.Column("agency_id", sa.String(120), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)
