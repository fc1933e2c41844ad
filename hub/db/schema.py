"""Every table of the hub's database, on one :data:`metadata`.

The Alembic migrations (``hub/db/migrations``) are the truth of the schema; these declarations must
match them exactly (``tests/db/test_migrations.py`` compares the two on SQLite and PostgreSQL).

Each table that holds a person's or a family's pseudonymous id says so in ``Table.info``, and says
what an erasure (:mod:`hub.governance.erasure`) and the retention schedule
(:mod:`hub.governance.retention`) do with its rows:

* ``personal`` — column name → what it identifies: :data:`SUBJECT` (a subject pseudonym),
  :data:`MEMBER` (a household member or child id) or :data:`HOUSEHOLD` (a household id).
* ``erase`` — what erasing a person does to their rows: :data:`DELETE` them; :data:`MARK` them
  erased (the ingest log: the sealed bytes stay, unreadable); :data:`SHRED` their data keys (the
  key vault); :data:`KEEP` them (the erasure's own register, the append-only audit chain, and the
  household and caseload, which belong to the family rather than to the person).
* ``erase_by`` — for :data:`DELETE` and :data:`MARK`: which column selects the person's rows, by
  kind: :data:`SUBJECT` (one of their pseudonyms), :data:`EVENT` (the id of an event about one of
  them) or :data:`MEMBER` (their member id).
* ``retain_by`` — the column holding an event id: the row goes when retention expires that event.

Tables without personal columns (cursors, worker heartbeats, audit anchors, agency webhooks) carry
no tags.

Tables
------
* ``ingest_log`` — every accepted event version, its encoded Avro bytes and envelope headers, in
  acceptance order (``seq``). The source of truth for re-seeding a new broker and for ``hub replay``.
  ``published_at`` is null until the broker acknowledged it (an outbox). Values are sealed with the
  subject's data key (:mod:`hub.wire.sealing`); ``erased_at`` marks rows of an erased subject (their
  keys are shredded: replay and re-seeding skip them); ``agency_id`` is the producing agency, for
  retention.
* ``timeline_entries`` — one row per source record (highest version wins), the projection the
  coordinator's timeline reads; ``timeline_changes`` — the change feed of household timelines.
* ``identity_links`` — subject pseudonym → child and household, the active link per subject.
* ``stream_cursors`` — how far a follower of the change feed has read, and who holds its lease.
* ``dead_letters`` — what failed after acceptance, with the original bytes, for ``hub dlq``.
* ``worker_status`` — heartbeats of stream workers, for ``/readyz``.
* ``subject_keys`` — per-subject data keys, wrapped by the master key (:mod:`hub.db.keyvault`);
  ``erased_subjects`` — subjects kept out of the projections (:mod:`hub.db.erasure_guard`);
  ``erasures`` — the erasure register (:mod:`hub.governance.erasure`).
* ``audit_log`` and ``audit_anchors`` — the hash-chained audit log (:mod:`hub.governance.audit`);
  ``audit_checkpoints`` — the signed checkpoints published off the database (:mod:`hub.governance.checkpoints`);
  ``audit_cursors`` — how far an earlier release's job had copied sharing decisions into it (read once
  after an upgrade, then deleted: :func:`hub.sharing.audit_trail.catch_up`); ``audit_dead_letters`` — records
  the writer could not store, with the reason (migration 0011).
* ``households``, ``household_members``, ``caseloads`` — enrolment (:mod:`hub.family.enrolment`).
* ``consent_directives`` — one row per consent directive (FHIR R4 Consent JSON as received), resolved
  to the hub child through ``identity_links``; ``status`` active / withdrawn / invalid, or
  pending_confirmation for one an agency recorded that the family has not confirmed.
* ``share_decisions`` — one row per (information event id, information version, recipient key, seq):
  the consent engine's decision with its basis, rule, rule-set version and reasons. ``seq`` 0 is the
  first decision; a re-decision after a consent change adds ``seq + 1`` and clears ``current`` on the
  older row, so the history stays auditable.
* ``deliveries`` — one row per (information, version, recipient, kind, round): ``kind`` share or
  withdrawal_notice; ``state`` withheld → queued → delivered → acknowledged, or cancelled / failed.
  ``round`` (migration 0009) counts the rows of one information version and recipient across both
  kinds: a notice after a delivered share takes the next round, and so does a share given again
  after a notice (consent withdrawn, then given again). The unique key is what makes each
  retroactive share or withdrawal notice happen exactly once. ``kind`` ``recall`` (migration 0016) is a
  notice that a copy came from a link undone as wrong. Both unique keys include the child (0016), so
  a subject re-linked to the right child is decided for that child afresh.
* ``sharing_failures`` — a child whose sharing pass failed (migration 0016): skipped so the follower
  moves on for every other family, and retried with backoff until a pass succeeds.
* ``alerts`` — coordinator alerts (unacknowledged delivery, readiness before an appointment,
  delivery failed) and report requests to producing services, once per ``alert_key``. Open until
  a person acknowledges it (``acknowledged_at`` / ``acknowledged_by``) and until its condition
  clears (``resolved_at`` with the ``resolution`` in words) — migration 0018.
* ``agency_webhooks`` — agency id → webhook URL and shared secret (``HUB_WEBHOOKS_FILE`` may add more);
  ``batch_max`` (migration 0029) is how many deliveries one POST may carry (1, the default: one each).
* ``disclosure_releases`` — a disclosure hold lifted: which entry, by whom (the producing agency or IG), when
  (migration 0017); the sharing step decides the entry as ``released``. ``safeguarding_overrides`` — a
  time-limited safeguarding override of one child (scope: recipient agency and service, categories,
  records), made by a safeguarding lead or IG, its justification sealed in its audit record.
* ``fhir_references`` — each agency's FHIR Patients, Practitioners, Organizations and services by
  ``(agency, resourceType, id)``, so a later resource's ``Patient/{id}`` resolves as on a FHIR server
  (:mod:`hub.ingest.references`): a Patient as its subject pseudonym only, the others as names and codes.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

SUBJECT: Final = "subject"
MEMBER: Final = "member"
HOUSEHOLD: Final = "household"
EVENT: Final = "event"

DELETE: Final = "delete"
MARK: Final = "mark"
SHRED: Final = "shred"
KEEP: Final = "keep"


# ---- ingest and projections (migrations 0001, 0002, 0007, 0008) -----------------------------------
ingest_log = sa.Table(
    "ingest_log", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, index=True),
    sa.Column("source_system", sa.String(120), nullable=False),
    sa.Column("source_id", sa.String(200), nullable=False),
    sa.Column("source_version", sa.BigInteger, nullable=False),
    sa.Column("record_type", sa.String(80), nullable=False),
    sa.Column("topic", sa.String(120), nullable=False),
    sa.Column("key", sa.String(80), nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("published_at", TS, nullable=True),
    sa.Column("agency_id", sa.String(120), nullable=True),  # the producing agency, for retention
    sa.Column("erased_at", TS, nullable=True),  # the subject was erased: the sealed value is unreadable
    sa.Column("content_digest", sa.String(40), nullable=True),  # keyed digest of the content (migration 0013)
    sa.Column("refused_at", TS, nullable=True),  # the broker refused it for good: dead-lettered (0014)
    sa.UniqueConstraint("source_system", "source_id", "source_version", name="uq_ingest_source_version"),
    info={"personal": {"key": SUBJECT}, "erase": MARK, "erase_by": {SUBJECT: "key"}, "retain_by": "event_id"},
)
sa.Index("ix_ingest_unpublished", ingest_log.c.published_at, ingest_log.c.seq)
sa.Index("ix_ingest_key", ingest_log.c.key)
sa.Index("ix_ingest_agency_time", ingest_log.c.agency_id, ingest_log.c.occurred_at)

timeline_entries = sa.Table(
    "timeline_entries", metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("subject", sa.String(80), nullable=False),
    sa.Column("record_type", sa.String(80), nullable=False),
    sa.Column("ce_type", sa.String(120), nullable=False),
    sa.Column("sector", sa.String(20), nullable=False),
    sa.Column("agency_id", sa.String(120), nullable=True),
    sa.Column("service_name", sa.String(200), nullable=True),
    sa.Column("category", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("source_system", sa.String(120), nullable=False),
    sa.Column("source_version", sa.BigInteger, nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
    info={"personal": {"subject": SUBJECT}, "erase": DELETE, "erase_by": {SUBJECT: "subject"},
          "retain_by": "event_id"},
)
sa.Index("ix_timeline_subject_time", timeline_entries.c.subject, timeline_entries.c.occurred_at,
         timeline_entries.c.event_id)

identity_links = sa.Table(
    "identity_links", metadata,
    sa.Column("subject", sa.String(80), primary_key=True),
    sa.Column("child_id", sa.String(80), nullable=False),
    sa.Column("household_id", sa.String(80), nullable=False, index=True),
    sa.Column("identifier_system", sa.String(40), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("source_version", sa.BigInteger, nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    info={"personal": {"subject": SUBJECT, "child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {SUBJECT: "subject", MEMBER: "child_id"}},
)

timeline_changes = sa.Table(
    "timeline_changes", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("household_id", sa.String(80), nullable=False),
    sa.Column("child_id", sa.String(80), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # added | updated | joined | left
    sa.Column("at", TS, nullable=False),
    info={"personal": {"child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {EVENT: "event_id", MEMBER: "child_id"}, "retain_by": "event_id"},
)
sa.Index("ix_timeline_changes_household", timeline_changes.c.household_id, timeline_changes.c.seq)

stream_cursors = sa.Table(
    "stream_cursors", metadata,
    sa.Column("name", sa.String(60), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),  # the last timeline_changes seq handled
    sa.Column("owner", sa.String(120), nullable=True),  # the process holding the lease
    sa.Column("lease_until", TS, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
)

# ---- where the projection is in each ingest partition (migration 0028) ------------------------------
stream_offsets = sa.Table(
    "stream_offsets", metadata,
    sa.Column("topic", sa.String(120), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    # the next offset to project: every record before it is in the projections, written in the same
    # transaction as them (hub.stream.projection.apply)
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    info={"personal": {}},  # positions only: nothing about a person
)

dead_letters = sa.Table(
    "dead_letters", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(120), nullable=False),
    sa.Column("partition", sa.Integer, nullable=True),
    sa.Column("offset", sa.BigInteger, nullable=True),
    sa.Column("key", sa.String(200), nullable=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("error_class", sa.String(120), nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column("failed_at", TS, nullable=False),
    sa.Column("replayed_at", TS, nullable=True),
    sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letter_position"),
    info={"personal": {"key": SUBJECT}, "erase": DELETE, "erase_by": {SUBJECT: "key"}},
)

worker_status = sa.Table(
    "worker_status", metadata,
    sa.Column("worker_id", sa.String(120), primary_key=True),
    sa.Column("state", sa.String(40), nullable=False),
    sa.Column("heartbeat_at", TS, nullable=False),
    sa.Column("processed", sa.BigInteger, nullable=False, default=0),
)

# ---- data keys and erasure (migration 0008) -------------------------------------------------------
subject_keys = sa.Table(
    "subject_keys", metadata,
    sa.Column("subject", sa.String(80), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("kek_id", sa.String(16), nullable=True),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("shredded_at", TS, nullable=True),
    info={"personal": {"subject": SUBJECT}, "erase": SHRED},
)

erased_subjects = sa.Table(
    "erased_subjects", metadata,
    sa.Column("subject", sa.String(80), primary_key=True),
    sa.Column("erased_at", TS, nullable=False),
    sa.Column("erasure_id", sa.String(36), nullable=False),
    info={"personal": {"subject": SUBJECT}, "erase": KEEP},
)

erasures = sa.Table(
    "erasures", metadata,
    sa.Column("erasure_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # member | subject
    sa.Column("household_id", sa.String(80), nullable=True),
    sa.Column("member_id", sa.String(80), nullable=True, index=True),
    sa.Column("subjects", sa.Text, nullable=False),  # JSON list of pseudonyms
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("requested_role", sa.String(120), nullable=False),
    sa.Column("erased_at", TS, nullable=False),
    sa.Column("audit_seq", sa.BigInteger, nullable=True),
    info={"personal": {"household_id": HOUSEHOLD, "member_id": MEMBER}, "erase": KEEP},
)

# ---- audit (migrations 0003, 0006) ----------------------------------------------------------------
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("recorded_at", TS, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("actor_role", sa.String(120), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("subject_household", sa.String(80), nullable=True),
    sa.Column("subject_child", sa.String(80), nullable=True),
    sa.Column("data_ref", sa.String(200), nullable=True),
    sa.Column("purpose", sa.String(200), nullable=True),
    sa.Column("legal_basis", sa.String(200), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    info={"personal": {"subject_household": HOUSEHOLD, "subject_child": MEMBER}, "erase": KEEP},
)
sa.Index("ix_audit_household", audit_log.c.subject_household, audit_log.c.seq)
sa.Index("ix_audit_action", audit_log.c.action, audit_log.c.seq)
sa.Index("ix_audit_data_ref", audit_log.c.data_ref)

audit_anchors = sa.Table(
    "audit_anchors", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("anchored_at", TS, nullable=False),
)

#: the signed checkpoints of the audit chain (migration 0014): the file and the ``hub.audit.checkpoints``
#: topic hold them; this table notes each one so a checkpoint gone from both is noticed
audit_checkpoints = sa.Table(
    "audit_checkpoints", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("signed_at", TS, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
)

audit_cursors = sa.Table(
    "audit_cursors", metadata,
    sa.Column("name", sa.String(60), primary_key=True),
    sa.Column("position", sa.String(200), nullable=False),
)

# audit records the writer could not store (migration 0011): the trail goes on without them, and the
# reason (which check failed, on which field; never the value) is kept for information governance
audit_dead_letters = sa.Table(
    "audit_dead_letters", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("failed_at", TS, nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("subject_household", sa.String(80), nullable=True),
    sa.Column("subject_child", sa.String(80), nullable=True),
    sa.Column("data_ref", sa.String(200), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    info={"personal": {"subject_household": HOUSEHOLD, "subject_child": MEMBER}, "erase": KEEP},
)

# ---- enrolment (migrations 0004, 0007) ------------------------------------------------------------
households = sa.Table(
    "households", metadata,
    sa.Column("household_id", sa.String(80), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(120), nullable=False),
    info={"personal": {"household_id": HOUSEHOLD}, "erase": KEEP},
)

household_members = sa.Table(
    "household_members", metadata,
    sa.Column("member_id", sa.String(80), primary_key=True),
    sa.Column("household_id", sa.String(80), sa.ForeignKey("households.household_id"), nullable=False, index=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("relationship", sa.String(40), nullable=False),
    sa.Column("parental_responsibility", sa.Boolean(), nullable=False),
    sa.Column("date_of_birth", sa.Text(), nullable=True),  # sealed under the member's key (migration 0024)
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("competent_from", sa.Date(), nullable=True),  # recorded (Gillick) competence before 16
    # a looked-after child's local authority (its agency id), a consent actor like a parent (migration 0017)
    sa.Column("corporate_parent", sa.String(120), nullable=True),
    info={"personal": {"member_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {MEMBER: "member_id"}},
)

caseloads = sa.Table(
    "caseloads", metadata,
    sa.Column("coordinator_id", sa.String(120), primary_key=True),
    sa.Column("household_id", sa.String(80), sa.ForeignKey("households.household_id"), primary_key=True),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    info={"personal": {"household_id": HOUSEHOLD}, "erase": KEEP},
)

# ---- sharing (migrations 0005, 0009) --------------------------------------------------------------
consent_directives = sa.Table(
    "consent_directives", metadata,
    sa.Column("directive_id", sa.String(120), primary_key=True),
    sa.Column("subject", sa.String(80), nullable=False),
    sa.Column("child_id", sa.String(80), nullable=True, index=True),
    sa.Column("household_id", sa.String(80), nullable=True),
    sa.Column("event_id", sa.String(36), nullable=True),
    sa.Column("source_version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("fhir_json", sa.Text, nullable=True),
    sa.Column("status", sa.String(20), nullable=False),  # active | withdrawn | invalid | pending_confirmation
    sa.Column("made_at", TS, nullable=True),
    sa.Column("withdrawn_at", TS, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
    info={"personal": {"subject": SUBJECT, "child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {SUBJECT: "subject", MEMBER: "child_id"}},
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
    # the child is part of the key (migration 0016): a subject re-linked to another child is decided afresh
    sa.UniqueConstraint("information_id", "recipient_key", "information_version", "child_id", "seq",
                        name="uq_share_decision"),
    info={"personal": {"child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {EVENT: "information_id", MEMBER: "child_id"}, "retain_by": "information_id"},
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
    # the POST in hand (state sending; next_attempt_at is then when its claim expires) — migration 0012
    sa.Column("attempt_id", sa.String(36), nullable=True),
    sa.Column("sending_at", TS, nullable=True),
    sa.UniqueConstraint("information_id", "information_version", "recipient_key", "child_id", "kind", "round",
                        name="uq_delivery"),
    info={"personal": {"child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {EVENT: "information_id", MEMBER: "child_id"}, "retain_by": "information_id"},
)
sa.Index("ix_deliveries_due", deliveries.c.state, deliveries.c.next_attempt_at)
sa.Index("ix_deliveries_agency", deliveries.c.agency_id, deliveries.c.created_at, deliveries.c.delivery_id)
sa.Index("ix_deliveries_child", deliveries.c.child_id)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("alert_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_key", sa.String(300), nullable=False, unique=True),
    sa.Column("kind", sa.String(30), nullable=False),  # ack_overdue | readiness | report_request | delivery_failed
    sa.Column("household_id", sa.String(80), nullable=False, index=True),
    sa.Column("child_id", sa.String(80), nullable=False),
    sa.Column("to_agency_id", sa.String(120), nullable=True),
    sa.Column("to_service", sa.String(200), nullable=True),
    sa.Column("message", sa.Text, nullable=False),  # sealed under the child's member key (migration 0024)
    sa.Column("details", sa.Text, nullable=False),  # JSON, sealed likewise
    sa.Column("created_at", TS, nullable=False),
    sa.Column("resolved_at", TS, nullable=True),
    # the lifecycle (migration 0018): open → acknowledged by a person → resolved when its condition clears
    sa.Column("acknowledged_at", TS, nullable=True),
    sa.Column("acknowledged_by", sa.String(200), nullable=True),  # the coordinator's hub subject
    sa.Column("resolution", sa.Text, nullable=True),  # why it was resolved, in words
    info={"personal": {"child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {MEMBER: "child_id"}},
)

# ---- a child whose sharing pass failed, skipped and retried (migration 0016) -----------------------
sharing_failures = sa.Table(
    "sharing_failures", metadata,
    sa.Column("child_id", sa.String(80), primary_key=True),
    sa.Column("household_id", sa.String(80), nullable=False),
    sa.Column("error", sa.Text, nullable=False),  # the error's class and message (no identifiers)
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("first_failed_at", TS, nullable=False),
    sa.Column("retry_at", TS, nullable=False),
    info={"personal": {"child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {MEMBER: "child_id"}},
)

# ---- disclosure holds released, safeguarding overrides (migration 0017) ---------------------------
disclosure_releases = sa.Table(
    "disclosure_releases", metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("household_id", sa.String(80), nullable=False),
    sa.Column("child_id", sa.String(80), nullable=False, index=True),
    sa.Column("released_by", sa.String(200), nullable=False),
    sa.Column("released_role", sa.String(40), nullable=False),
    sa.Column("agency_id", sa.String(120), nullable=True),  # the releasing agency (role agency)
    sa.Column("released_at", TS, nullable=False),
    sa.Column("audit_seq", sa.BigInteger, nullable=True),
    info={"personal": {"child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {EVENT: "event_id", MEMBER: "child_id"}, "retain_by": "event_id"},
)

safeguarding_overrides = sa.Table(
    "safeguarding_overrides", metadata,
    sa.Column("override_id", sa.String(36), primary_key=True),
    sa.Column("household_id", sa.String(80), nullable=False),
    sa.Column("child_id", sa.String(80), nullable=False, index=True),
    sa.Column("made_by", sa.String(200), nullable=False),
    sa.Column("made_role", sa.String(40), nullable=False),
    sa.Column("recipient_agency_id", sa.String(120), nullable=False),
    sa.Column("recipient_service", sa.String(200), nullable=True),
    sa.Column("categories", sa.Text, nullable=True),  # JSON list, null = every category
    sa.Column("information_ids", sa.Text, nullable=True),  # JSON list, null = every record
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False),
    sa.Column("tell_family", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("audit_seq", sa.BigInteger, nullable=True),  # the override record (justification sealed there)
    # when the hub saw it expire and decided the child again without it (audited, migration 0020)
    sa.Column("expired_at", TS, nullable=True),
    info={"personal": {"child_id": MEMBER, "household_id": HOUSEHOLD}, "erase": DELETE,
          "erase_by": {MEMBER: "child_id"}},
)

agency_webhooks = sa.Table(
    "agency_webhooks", metadata,
    sa.Column("agency_id", sa.String(120), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    # the most deliveries one POST may carry: 1 sends each alone, more batches them (migration 0029)
    sa.Column("batch_max", sa.Integer, nullable=False, server_default="1"),
)

# ---- FHIR references between requests (migration 0010) --------------------------------------------
fhir_references = sa.Table(
    "fhir_references", metadata,
    sa.Column("agency", sa.String(200), primary_key=True),
    sa.Column("resource_type", sa.String(40), primary_key=True),
    sa.Column("resource_id", sa.String(200), primary_key=True),
    sa.Column("subject", sa.String(80), nullable=True, index=True),  # a Patient's pseudonym
    sa.Column("summary", sa.Text, nullable=False),  # JSON: what mapping needs (no NHS number, no name)
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    info={"personal": {"subject": SUBJECT}, "erase": DELETE, "erase_by": {SUBJECT: "subject"}},
)

# ---- one-time sign-in links to the pages (migration 0023) ------------------------------------------
page_signins = sa.Table(
    "page_signins", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # SHA-256 of the link's secret; never the secret
    sa.Column("user_id", sa.String(200), nullable=False),  # the role's subject (a staff or family user id)
    sa.Column("role", sa.String(40), nullable=False),
    sa.Column("agency", sa.String(120), nullable=True),
    sa.Column("household_id", sa.String(80), nullable=True),
    sa.Column("member_id", sa.String(80), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("used_at", TS, nullable=True),
    info={"personal": {"household_id": HOUSEHOLD, "member_id": MEMBER}, "erase": DELETE,
          "erase_by": {MEMBER: "member_id"}},
)

# ---- the family's "tell it once" summary of a child (migration 0026) -------------------------------
child_summaries = sa.Table(
    "child_summaries", metadata,
    sa.Column("child_id", sa.String(80), primary_key=True),
    sa.Column("household_id", sa.String(80), nullable=False, index=True),
    # the key the text is sealed under (``summary:<child id>``): shredded when the child is erased
    sa.Column("subject", sa.String(80), nullable=False),
    sa.Column("sealed", sa.Text, nullable=False),  # base64 sealed frame of the JSON text; never clear
    sa.Column("shared", sa.Boolean, nullable=False),  # with the child's coordinator and team
    sa.Column("written_by", sa.String(200), nullable=False),
    sa.Column("written_role", sa.String(40), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("shared_changed_at", TS, nullable=True),
    info={"personal": {"child_id": MEMBER, "household_id": HOUSEHOLD, "subject": SUBJECT}, "erase": DELETE,
          "erase_by": {MEMBER: "child_id", SUBJECT: "subject"}},
)
