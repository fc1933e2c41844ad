"""Making the alerts table agree with the episodes the coordination rules find, from one read of the alerts.

A sweep reads the alerts of the households it is about to settle once (:func:`known`: by household, or by key),
and a :class:`Settling` compares each episode with its alert in memory and writes only what differs: an alert
raised, corrected (records arrived late) or resolved, each also a change in the household's feed, written
together at the end (:meth:`Settling.finish`). An episode seen again on every sweep with its alert as it
should be costs no statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db.schema import alerts, timeline_changes
from hub.db.sealed import sealer_of
from hub.db.store import as_utc, utcnow
from hub.sharing.alerts import coordinator_of, raise_alert, resolve, seal_message
from hub.stream.coordination import Episode
from hub.stream.projection import lock_change_feed

A = alerts.c
GONE = "the records no longer show this condition"
#: households or keys per query
CHUNK = 300


@dataclass
class Known:
    """An alert as the sweep read it, its message opened (``[erased]`` once the child's key was shredded)."""

    alert_id: int
    household_id: str
    child_id: str
    created_at: datetime
    resolved_at: datetime | None
    message: str
    resolution: str | None


def known(conn: Connection, *, households: Iterable[str] = (), keys: Iterable[str] = (),
          kinds: tuple[str, ...] | None = None) -> dict[str, Known]:
    """The alerts (of ``kinds``, if given) of these households, and those with these keys, by key."""
    cols = (A.alert_key, A.alert_id, A.household_id, A.child_id, A.created_at, A.resolved_at, A.message, A.resolution)
    rows: dict[str, Any] = {}
    for column, values in ((A.household_id, sorted(set(households))), (A.alert_key, sorted(set(keys)))):
        for i in range(0, len(values), CHUNK):
            q = sa.select(*cols).where(column.in_(values[i:i + CHUNK]))
            if kinds is not None:
                q = q.where(A.kind.in_(kinds))
            rows.update((r.alert_key, r) for r in conn.execute(q))
    seal = sealer_of(conn)
    seal.prefetch(r.message for r in rows.values())  # their keys in a few queries, not one an alert
    return {key: Known(r.alert_id, r.household_id, r.child_id, as_utc(r.created_at),
                       as_utc(r.resolved_at) if r.resolved_at is not None else None,
                       seal.text(A.message, key, r.message), r.resolution) for key, r in rows.items()}


def feed(conn: Connection, household_id: str, child_id: str, key: str, kind: str) -> None:
    """Put an alert raised or resolved into the household's change feed (the live streams)."""
    alert_id = conn.execute(sa.select(A.alert_id).where(A.alert_key == key)).scalar_one()
    lock_change_feed(conn)
    conn.execute(timeline_changes.insert().values(household_id=household_id, child_id=child_id,
                                                  event_id=str(alert_id), kind=kind, at=utcnow()))


class Settling:
    """One transaction settling alerts: ``have`` the alerts as read in it (:func:`known`). The change-feed rows
    are kept until :meth:`finish`, which writes them in one statement: the feed's lock (which the projection
    waits for) is held from then to the commit, not across the whole settling."""

    def __init__(self, conn: Connection, have: dict[str, Known]) -> None:
        self.conn, self.have = conn, have
        self.seal = sealer_of(conn)  # one key lookup a child for everything sealed in this transaction
        self._coordinators: dict[str, tuple[str | None, str | None]] = {}
        self._feed: list[tuple[str, str, str, str]] = []  # household, child, alert key, kind

    def apply(self, episodes: Iterable[Episode], now: datetime, forget: datetime | None = None) -> int:
        """Raise every episode raised by ``now`` and resolve those cleared by then; how many were raised. An
        alert a late record contradicts (it began, or cleared, at another time) is corrected to the episode. An
        episode that cleared before ``forget`` (:func:`hub.governance.alert_retention.forget_before`) is not
        raised if it has no alert: retention removed it (or would at once)."""
        raised = 0
        for ep in episodes:
            alert = self.have.get(ep.key)
            if ep.raised_at > now or (alert is None and forget is not None and ep.cleared_at is not None
                                      and ep.cleared_at < forget):
                continue
            if alert is None and self._raise(ep):
                raised += 1
                self._feed.append((ep.household_id, ep.child_id, ep.key, "alert"))
            elif alert is not None and self._correct(ep, alert, now):
                self._feed.append((ep.household_id, ep.child_id, ep.key, "alert_corrected"))
                continue
            if (ep.cleared_at is not None and ep.cleared_at <= now and (alert is None or alert.resolved_at is None)
                    and resolve(self.conn, ep.key, ep.resolution or "the condition cleared", ep.cleared_at)):
                self._feed.append((ep.household_id, ep.child_id, ep.key, "alert_resolved"))
        return raised

    def _raise(self, ep: Episode) -> bool:
        if ep.child_id and ep.child_id not in self._coordinators:
            self._coordinators[ep.child_id] = coordinator_of(self.conn, ep.child_id)
        agency, service = self._coordinators.get(ep.child_id, (None, None)) if ep.child_id else (None, None)
        return raise_alert(self.conn, key=ep.key, kind=ep.rule, household_id=ep.household_id, child_id=ep.child_id,
                           to_agency_id=agency, to_service=service, message=ep.message,
                           details={**ep.details, "raised_at": ep.raised_at.isoformat()}, now=ep.raised_at,
                           seal=self.seal)

    def _correct(self, ep: Episode, alert: Known, now: datetime) -> bool:
        """Bring an existing alert's times and words to its episode as the records now show it (records arrived
        late); True when it changed. An acknowledgement stays; an alert resolved too early opens again."""
        if alert.resolved_at is not None and alert.resolution == GONE:
            return False
        cleared = ep.cleared_at if ep.cleared_at is not None and ep.cleared_at <= now else None
        want: tuple[Any, ...] = (ep.raised_at, cleared, ep.message, ep.resolution if cleared else None)
        if (alert.created_at, alert.resolved_at, alert.message, alert.resolution) == want:
            return False
        self.conn.execute(alerts.update().where(A.alert_key == ep.key).values(
            created_at=ep.raised_at, resolved_at=cleared,
            message=seal_message(self.seal, ep.key, alert.child_id, ep.message), resolution=want[3]))
        return True

    def resolve_gone(self, household_id: str, keep: set[str], now: datetime, reason: str = GONE) -> None:
        """Resolve the household's alerts in ``have`` still open that no episode in ``keep`` shows any more."""
        gone = sorted((a.alert_id, key, a.child_id) for key, a in self.have.items()
                      if a.household_id == household_id and a.resolved_at is None and key not in keep)
        for _id, key, child_id in gone:
            if resolve(self.conn, key, reason, now):
                self._feed.append((household_id, child_id, key, "alert_resolved"))

    def finish(self) -> None:
        """Write the change-feed rows of everything settled, in the order it was settled."""
        if not self._feed:
            return
        ids = {k: a.alert_id for k, a in self.have.items()}
        new = sorted({key for _h, _c, key, _k in self._feed if key not in ids})
        for i in range(0, len(new), CHUNK):
            ids.update((r.alert_key, r.alert_id) for r in self.conn.execute(
                sa.select(A.alert_key, A.alert_id).where(A.alert_key.in_(new[i:i + CHUNK]))))
        at = utcnow()
        lock_change_feed(self.conn)
        self.conn.execute(timeline_changes.insert(), [
            {"household_id": hh, "child_id": child, "event_id": str(ids[key]), "kind": kind, "at": at}
            for hh, child, key, kind in self._feed])
        self._feed.clear()
