"""Retention of alerts: resolved alerts, and their rows in the household change feed, are removed after
``HUB_ALERT_RETENTION_DAYS`` (default 365; 0 keeps them).

An alert is expired when it was resolved (``resolved_at``) more than the period before the cut-off
time: the earlier of the wall clock and the event-time clock (:func:`hub.stream.readmodel.event_clock`),
less the period. Open and acknowledged alerts are never removed, whatever their age: their condition
still holds, and the coordinator's caseload, family pages and live streams show them as before. An
acknowledged alert about a share the agency never acknowledges is resolved when retention of events
removes the share ("the share is no longer held by the hub"), and goes the period after that.

:func:`apply_alert_retention` removes expired alerts and their ``alert``, ``alert_resolved`` and
``alert_corrected`` rows in ``timeline_changes`` in transactions of up to 2,000 alerts, then writes
one ``erasure`` audit record (purpose ``retention``, ``data_ref`` ``retention:alerts``) with the period,
the cut-off and the counts by kind. The newest row of the change feed is never removed (SQLite would
give its sequence number to the next change, and a live stream resuming from it would miss that
change). Idempotent and safe on a schedule; ``dry_run`` only counts.

The coordination sweep does not raise an episode again that cleared before its own cut-off (the
event-time clock less the period, :func:`forget_before`), so a removed alert stays removed; the other
alerts are raised once per delivery, appointment or report, for conditions that do not come back once
resolved.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from hub.core.logging import get_logger
from hub.core.settings import sharing_settings
from hub.db.schema import alerts, timeline_changes
from hub.db.store import Store, as_utc, utcnow
from hub.governance.audit import AuditLog, check_detail
from hub.stream.readmodel import event_clock

log = get_logger(__name__)
A = alerts.c
C = timeline_changes.c
#: the changes an alert makes in its household's change feed
FEED_KINDS = ("alert", "alert_resolved", "alert_corrected")
_CHUNK = 2000


def retention_days() -> int:
    """``HUB_ALERT_RETENTION_DAYS``: days a resolved alert is kept (0: kept for ever)."""
    return sharing_settings().alert_retention_days


def forget_before(clock: datetime, days: int | None = None) -> datetime | None:
    """Episodes cleared before this event time are not raised again (None: retention is off)."""
    days = retention_days() if days is None else days
    return clock - timedelta(days=days) if days > 0 else None


@dataclass
class AlertRetentionReport:
    days: int
    cutoff: datetime | None
    dry_run: bool
    by_kind: dict[str, int] = field(default_factory=dict)
    feed_rows: int = 0
    audit_seq: int | None = None

    @property
    def alerts(self) -> int:
        return sum(self.by_kind.values())


def _feed_rows(ids: list[str], newest: int | None) -> sa.ColumnElement[bool]:
    where = sa.and_(C.kind.in_(FEED_KINDS), C.event_id.in_(ids))
    return sa.and_(where, C.seq < newest) if newest is not None else where


def apply_alert_retention(store: Store, days: int | None = None, *, now: datetime | None = None,
                          dry_run: bool = False, actor: str = "hub-retention",
                          actor_role: str = "system") -> AlertRetentionReport:
    """Remove (or with ``dry_run`` count) the alerts resolved more than ``days`` ago; see the module docstring."""
    days = retention_days() if days is None else days
    if days <= 0:
        return AlertRetentionReport(days, None, dry_run)
    now = now or utcnow()
    with store.engine.connect() as conn:
        clock = event_clock(conn)
        cutoff = min(now, clock) - timedelta(days=days) if clock is not None else now - timedelta(days=days)
        rows = conn.execute(sa.select(A.alert_id, A.kind).where(
            A.resolved_at.is_not(None), A.resolved_at < cutoff).order_by(A.alert_id)).all()
        newest = conn.execute(sa.select(sa.func.max(C.seq))).scalar()
        ids = [str(r.alert_id) for r in rows]
        feed = sum(conn.execute(sa.select(sa.func.count()).select_from(timeline_changes).where(
            _feed_rows(ids[i:i + _CHUNK], newest))).scalar_one() for i in range(0, len(ids), _CHUNK))
    report = AlertRetentionReport(days, as_utc(cutoff), dry_run, dict(sorted(Counter(r.kind for r in rows).items())),
                                  feed)
    if dry_run or not rows:
        return report
    detail = {"alerts": {"days": days, "cutoff": report.cutoff.isoformat() if report.cutoff else None,
                         "removed": report.by_kind, "feed_rows": feed}}
    check_detail(detail)  # before anything is removed: the audit record must be writable
    removed = 0
    for i in range(0, len(rows), _CHUNK):
        chunk = [r.alert_id for r in rows[i:i + _CHUNK]]
        with store.engine.begin() as conn:
            removed += conn.execute(timeline_changes.delete().where(
                _feed_rows([str(a) for a in chunk], newest))).rowcount or 0
            conn.execute(alerts.delete().where(A.alert_id.in_(chunk)))
    report.feed_rows = detail["alerts"]["feed_rows"] = removed
    record = AuditLog(store).record(
        "erasure", actor=actor, actor_role=actor_role, data_ref="retention:alerts", purpose="retention",
        legal_basis="retention schedule (HUB_ALERT_RETENTION_DAYS)", detail=detail)
    report.audit_seq = record.seq
    log.info("retention.alerts_removed", alerts=report.alerts, feed_rows=feed, audit_seq=record.seq)
    return report
