"""Per-agency retention: events older than their producing agency's retention period are removed.

The policy (``HUB_RETENTION_POLICY`` or ``HUB_RETENTION_POLICY_FILE``) is a JSON object mapping the
producing agency id — the ``agency_id`` of the record's service or school, e.g. an ODS code — to a
retention period in whole days; ``"*"`` applies to every agency not named. Agencies with no period
(and records with no producing agency: identity links, consent directives, which belong to the
enrolment and go with an erasure) are kept.

An event is expired when *every* version of it occurred more than its agency's period ago (event
time, ``occurred_at``). :func:`apply_retention` removes expired events from every table tagged
``retain_by`` in :mod:`hub.db.schema`: the ingest log (all versions: the sealed bytes go too) and the
projections built from it — timeline entries, timeline changes, share decisions and deliveries — in
transactions of up to 2,000 events, then
writes one ``erasure`` audit record (purpose ``retention``) naming the agencies, cut-offs and counts.
It is idempotent and safe to run on a schedule; ``dry_run`` only counts.

The broker side is Kafka's own topic retention: a record stays on an ingest topic until the
topic's ``retention.ms`` passes, whatever this policy says, so the ingest topics' retention must be
shorter than the shortest agency period (the hub re-seeds and replays from its database, not from
Kafka). See docs/operations.md, "Erasure and retention".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from hub.core.errors import ConfigError
from hub.core.logging import get_logger
from hub.core.settings import Settings
from hub.db.schema import ingest_log, metadata
from hub.db.store import Store, utcnow
from hub.governance.audit import AuditLog, check_detail

log = get_logger(__name__)
LOG = ingest_log.c
DEFAULT = "*"
_CHUNK = 2000


@dataclass(frozen=True)
class RetentionPolicy:
    """Retention period in days per producing agency id; ``default`` for agencies not named."""

    periods: Mapping[str, int] = field(default_factory=dict)
    default: int | None = None

    @classmethod
    def parse(cls, text: str) -> RetentionPolicy:
        if not text.strip():
            return cls()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"the retention policy is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError('the retention policy must be a JSON object: {"<agency id>": <days>, "*": <days>}')
        periods: dict[str, int] = {}
        for agency, days in data.items():
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise ConfigError(f"retention period of agency {agency!r} must be a whole number of days, 1 or more")
            periods[str(agency)] = days
        default = periods.pop(DEFAULT, None)
        return cls(periods, default)

    def period_for(self, agency_id: str) -> int | None:
        return self.periods.get(agency_id, self.default)

    def as_dict(self) -> dict[str, int]:
        out = dict(self.periods)
        if self.default is not None:
            out[DEFAULT] = self.default
        return out


def load_policy(settings: Settings) -> RetentionPolicy:
    if settings.retention_policy:
        return RetentionPolicy.parse(settings.retention_policy)
    if settings.retention_policy_file is not None:
        try:
            return RetentionPolicy.parse(settings.retention_policy_file.read_text())
        except OSError as exc:
            raise ConfigError(f"retention policy file {settings.retention_policy_file} cannot be read: "
                              f"{exc.strerror or exc}") from None
    return RetentionPolicy()


@dataclass(frozen=True)
class AgencyExpiry:
    agency_id: str
    days: int
    cutoff: datetime
    events: int
    versions: int


@dataclass
class RetentionReport:
    dry_run: bool
    agencies: list[AgencyExpiry]
    removed: dict[str, int] = field(default_factory=dict)
    audit_seq: int | None = None

    @property
    def events(self) -> int:
        return sum(a.events for a in self.agencies)


def _expired(store: Store, agency_id: str, cutoff: datetime) -> tuple[list[str], int]:
    """Event ids of an agency whose every version occurred before ``cutoff``, and how many versions."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(LOG.event_id, sa.func.count()).where(LOG.agency_id == agency_id)
                            .group_by(LOG.event_id).having(sa.func.max(LOG.occurred_at) < cutoff)).all()
    return [r[0] for r in rows], sum(int(r[1]) for r in rows)


def _retained() -> list[tuple[sa.Table, sa.Column[str]]]:
    """Every table tagged ``retain_by`` in :mod:`hub.db.schema`, with its event id column."""
    return [(t, t.c[t.info["retain_by"]]) for t in metadata.sorted_tables if "retain_by" in t.info]


def _remove(store: Store, event_ids: list[str], removed: dict[str, int]) -> None:
    targets = _retained()
    for i in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[i:i + _CHUNK]
        with store.engine.begin() as conn:
            for table, column in targets:
                n = conn.execute(table.delete().where(column.in_(chunk))).rowcount or 0
                if n:
                    removed[table.name] = removed.get(table.name, 0) + n


def apply_retention(store: Store, policy: RetentionPolicy, *, now: datetime | None = None, dry_run: bool = False,
                    actor: str = "hub-retention", actor_role: str = "system") -> RetentionReport:
    """Remove (or with ``dry_run`` count) every expired event; see the module docstring."""
    now = now or utcnow()
    with store.engine.connect() as conn:
        agencies = sorted(r[0] for r in conn.execute(
            sa.select(LOG.agency_id).where(LOG.agency_id.is_not(None)).distinct()))
    report = RetentionReport(dry_run, [])
    expired: dict[str, list[str]] = {}
    for agency_id in agencies:
        days = policy.period_for(agency_id)
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        ids, versions = _expired(store, agency_id, cutoff)
        report.agencies.append(AgencyExpiry(agency_id, days, cutoff, len(ids), versions))
        expired[agency_id] = ids
    if dry_run or not report.events:
        return report
    detail = {"policy": policy.as_dict(), "removed": report.removed,
              "agencies": {a.agency_id: {"days": a.days, "cutoff": a.cutoff.isoformat(), "events": a.events,
                                         "versions": a.versions} for a in report.agencies if a.events}}
    check_detail(detail)  # before anything is removed: the audit record must be writable
    for ids in expired.values():
        _remove(store, ids, report.removed)
    record = AuditLog(store).record(
        "erasure", actor=actor, actor_role=actor_role, data_ref="retention", purpose="retention",
        legal_basis="retention schedule (HUB_RETENTION_POLICY)", detail=detail)
    report.audit_seq = record.seq
    log.info("retention.applied", events=report.events, rows=sum(report.removed.values()), audit_seq=record.seq)
    return report
