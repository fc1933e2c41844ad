"""Coordination alerts from the rules of :mod:`hub.stream.coordination`, raised and resolved in event time.

A sweep reads each household's children's records (the projection), asks the pure rules for their
episodes up to the hub's event-time clock, and makes the alerts table agree: every episode raised by
then is an alert (``created_at`` the event time it was raised), every episode cleared by then is
resolved (``resolved_at`` the event time it cleared, with the rule's words), and an unresolved alert
whose episode the records no longer show (a late record changed the history) is resolved saying so.
Because it writes whole episodes, not what it happens to see between two sweeps, replaying the same
records gives the same alerts. A record that arrives late (after a sweep passed its event time) corrects
the alerts it touches to what the full record shows; one raised on records a late one contradicts is
kept, resolved as no longer shown. Each alert raised, resolved or corrected is also a change in the
household's change feed (kind ``alert``, ``alert_resolved``, ``alert_corrected``), so it reaches the
coordinator's live streams. An episode that cleared before the alerts' retention cut-off
(:func:`hub.governance.alert_retention.forget_before`) is not raised again once retention removed its alert.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consent.ruleset import load_ruleset as load_consent_ruleset
from hub.core.errors import ConfigError
from hub.core.settings import sharing_settings
from hub.db.schema import alerts, caseloads, household_members, timeline_changes
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc, utcnow
from hub.governance.alert_retention import FEED_KINDS, forget_before
from hub.sharing import alert_sync
from hub.sharing.alerts import opened, resolve, unresolved
from hub.sharing.sweep_scope import Looked, SweepScope
from hub.stream import readmodel
from hub.stream.clocks import ClockSet, child_clocks, clock_episodes, load_clocks
from hub.stream.coordination import (
    CHILD_RULES,
    ChildFacts,
    Episode,
    Fact,
    Ruleset,
    caseload_episode,
    child_episodes,
    load_ruleset,
)
from hub.stream.household_records import CHUNK, household_records

A = alerts.c
CHILD_KINDS: tuple[str, ...] = (*CHILD_RULES, "statutory_clock")
KINDS: tuple[str, ...] = (*CHILD_KINDS, "caseload_over_limit")


def ruleset() -> Ruleset:
    """The rule set with ``HUB_ALERT_RULES_FILE`` applied; a bad file is a ConfigError naming it."""
    path: Path | None = sharing_settings().alert_rules_file
    try:
        return load_ruleset(json.loads(path.read_text()) if path else None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"HUB_ALERT_RULES_FILE: {exc}") from None


def statutory_clocks() -> ClockSet:
    """The statutory clocks of ``HUB_STATUTORY_NATIONS`` (all when unset); an unknown nation is a ConfigError."""
    settings = sharing_settings()
    nations = tuple(n.strip().lower() for n in settings.statutory_nations.split(",") if n.strip()) or None
    try:
        return _clock_set(nations, settings.statutory_warn_days)
    except ValueError as exc:
        raise ConfigError(f"HUB_STATUTORY_NATIONS: {exc}") from None


@functools.lru_cache(maxsize=8)
def _clock_set(nations: tuple[str, ...] | None, warn_days: int) -> ClockSet:
    """The rule set file read once per choice of nations and warning (a page reads the clocks on every view)."""
    return load_clocks(nations, warn_days)


@functools.cache
def untold_categories() -> frozenset[str]:
    """Categories no coordination alert speaks of: the consent rule set's restricted ones (mental health,
    child protection, ...)."""
    return frozenset(c.value for c in load_consent_ruleset().restricted_categories)


def clock(conn: Connection) -> datetime | None:
    """The event-time clock (:func:`hub.stream.readmodel.event_clock`)."""
    return readmodel.event_clock(conn)


def _birthdays(store: Store, household_ids: list[str]) -> dict[str, dict[str, date | None]]:
    """Each household's children's dates of birth (where enrolment records one)."""
    M = household_members.c
    seal = sealer(store)
    out: dict[str, dict[str, date | None]] = {hh: {} for hh in household_ids}
    with store.engine.connect() as conn:
        for i in range(0, len(household_ids), CHUNK):
            rows = conn.execute(sa.select(M.household_id, M.member_id, M.date_of_birth).where(
                M.household_id.in_(household_ids[i:i + CHUNK]), M.kind == "child")).all()
            seal.prefetch(r.date_of_birth for r in rows)
            for r in rows:
                out[r.household_id][r.member_id] = seal.date(M.date_of_birth, r.member_id, r.date_of_birth)
    return out


def household_clocks(store: Store, household_id: str, now: datetime | None = None, *,
                     records: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Each child's statutory clocks as of ``now`` (default: today, as the people waiting count): deadline,
    state, days left. A deadline is a date in law, so the days left are counted from the wall clock.
    ``records``: each child's records (``readmodel.child_records``) where the caller has read them already."""
    clocks = statutory_clocks()
    at = now or utcnow()
    return {"household_id": household_id, "as_of": at.isoformat(), "warn_days": clocks.warn_days,
            "children": {c.child_id: [k.as_dict() for k in child_clocks(clocks, c, at)]
                         for c in household_facts(store, household_id, records=records)}}


def household_facts(store: Store, household_id: str, *, as_coordinator: bool = True,
                    records: dict[str, list[dict[str, Any]]] | None = None) -> list[ChildFacts]:
    """Each child of the household with their active records, in event-time order. Records the read policy
    can hide from a coordinator (under a disclosure hold, or in a restricted category such as mental health
    or child protection) are left out unless ``as_coordinator`` is false (aggregate figures): an alert
    would tell of them. ``records``: the children's records if already read (else read here)."""
    if records is None:
        records = {c: readmodel.child_records(store, household_id, c) for c in readmodel.children(store, household_id)}
    return facts_of(household_id, records, _birthdays(store, [household_id])[household_id], as_coordinator)


def facts_of(household_id: str, records: dict[str, list[dict[str, Any]]], dob: dict[str, date | None],
             as_coordinator: bool = True) -> list[ChildFacts]:
    """:func:`household_facts` from the children's records and dates of birth already read."""
    untold = untold_categories() if as_coordinator else frozenset()
    out = []
    for child, rows in records.items():
        facts = tuple(Fact(r["event_id"], r["record_type"], r["occurred_at"], r["agency_id"], r["service_name"],
                           r["record"]) for r in rows
                      if not (as_coordinator and r["held"]) and r["category"] not in untold)
        out.append(ChildFacts(household_id, child, facts, dob.get(child)))
    return out


def sweep(store: Store, now: datetime | None = None, *, households: list[str] | None = None,
          rules: Ruleset | None = None, clocks: ClockSet | None = None, scope: SweepScope | None = None) -> int:
    """Evaluate the coordination rules and the statutory clocks for every (or the given) household at the
    event-time clock (or ``now``), and the caseload rule for every coordinator; returns how many alerts were
    raised. With a ``scope`` (and no ``households``), only the households it plans
    (:mod:`hub.sharing.sweep_scope`), and it learns from what they showed."""
    rules = rules or ruleset()
    clocks = clocks or statutory_clocks()
    with store.engine.connect() as conn:
        at = now or clock(conn)
        plan = (scope.plan(conn, at, (rules, clocks)) if scope is not None and households is None and at is not None
                else None)
    if plan is not None:
        households = plan.households
    ids = households if households is not None else [h.household_id for h in readmodel.households(store)]
    raised = 0
    looked: list[tuple[str, Looked]] = []
    if at is not None:  # else nothing recorded yet: no event time
        forget = forget_before(at)
        for i in range(0, len(ids), CHUNK):
            n, seen = sweep_households(store, ids[i:i + CHUNK], at, rules, clocks, forget)
            raised += n
            looked += seen
    if scope is not None and plan is not None:
        scope.done(plan, looked)
    return raised + sweep_caseloads(store, rules)


def sweep_households(store: Store, household_ids: list[str], at: datetime, rules: Ruleset, clocks: ClockSet,
                     forget: datetime | None = None) -> tuple[int, list[tuple[str, Looked]]]:
    """The households' alerts made to agree with their records at the event-time clock ``at``, read in a few
    queries and written in one transaction: how many were raised, and each household's next event time at which
    they could change with no new record (:func:`next_change`)."""
    records = household_records(store, household_ids)
    dobs = _birthdays(store, household_ids)
    found: list[tuple[str, list[Episode]]] = []
    looked: list[tuple[str, Looked]] = []
    for hh in household_ids:  # the rules first: the transaction holds the change feed's lock once it writes
        children = facts_of(hh, records[hh], dobs[hh])
        found.append((hh, [e for child in children
                           for e in child_episodes(rules, child, at) + clock_episodes(clocks, child, at)]))
        looked.append((hh, Looked(wake_at=next_change(rules, clocks, children, at))))
    raised = 0
    with store.engine.begin() as conn:
        settling = alert_sync.Settling(conn, alert_sync.known(
            conn, households=household_ids, keys=[e.key for _hh, eps in found for e in eps], kinds=CHILD_KINDS))
        for hh, episodes in found:
            raised += settling.apply(episodes, at, forget)
            settling.resolve_gone(hh, {e.key for e in episodes if e.raised_at <= at}, at)
        settling.finish()
    return raised, looked


#: how far past the clock :func:`next_change` looks for an episode's beginning or end
HORIZON = timedelta(days=366 * 30)


def next_change(rules: Ruleset, clocks: ClockSet, children: Iterable[ChildFacts], at: datetime) -> datetime | None:
    """The first event time after ``at`` at which the children's episodes could differ from those at ``at``
    with no new record: a record dated after the clock coming due, or an episode (as the records would show
    it far ahead) beginning or ending. Until then, evaluating at any clock gives the episodes at ``at``."""
    ahead = at + HORIZON
    times: list[datetime] = []
    for child in children:
        times += [f.occurred_at for f in child.facts]
        for ep in child_episodes(rules, child, ahead) + clock_episodes(clocks, child, ahead):
            times += [ep.raised_at] + ([ep.cleared_at] if ep.cleared_at is not None else [])
    return min((t for t in times if t > at), default=None)


def sweep_caseloads(store: Store, rules: Ruleset) -> int:
    """The caseload rule for every coordinator: raised on the household that took the caseload over the
    limit, resolved when it is back within it (the caseload is enrolment, not events: wall time)."""
    C = caseloads.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(C.coordinator_id, C.household_id, C.since)).all()
    joined: dict[str, list[tuple[str, datetime]]] = {}
    for r in rows:
        joined.setdefault(r.coordinator_id, []).append((r.household_id, as_utc(r.since)))
    raised = 0
    now = utcnow()
    with store.engine.begin() as conn:
        for coordinator, households in joined.items():
            ep = caseload_episode(rules, coordinator, households, now)
            keep = {ep.key} if ep is not None else set()
            if ep is not None:
                settling = alert_sync.Settling(conn, alert_sync.known(conn, keys=[ep.key]))
                raised += settling.apply([ep], now)
                settling.finish()
            limit = rules.get("caseload_over_limit")
            words = (f"caseload back to {len(households)} families, within the limit of "
                     f"{limit.params['limit'] if limit else 'the limit'}")
            for hh, _ in households:
                _resolve_gone_keyed(conn, hh, coordinator, keep, now, words)
    return raised


def _resolve_gone_keyed(conn: Connection, household_id: str, coordinator: str, keep: set[str], now: datetime,
                        reason: str) -> None:
    suffix = f":{coordinator}"
    for a in unresolved(conn, ("caseload_over_limit",), household_id=household_id):
        if a["alert_key"].endswith(suffix) and a["alert_key"] not in keep and resolve(conn, a["alert_key"], reason,
                                                                                         now):
            alert_sync.feed(conn, household_id, a["child_id"], a["alert_key"], "alert_resolved")


def alert_changes(store: Store, household_ids: list[str], after: int, upto: int | None = None) -> list[dict[str, Any]]:
    """The alerts raised or resolved in these households' change feed after ``after`` (to ``upto``)."""
    C = timeline_changes.c
    q = (sa.select(C.seq, C.household_id, C.child_id, C.kind, A.alert_id, A.kind.label("alert_kind"), A.message,
                   A.details, A.created_at, A.acknowledged_at, A.resolved_at, A.resolution, A.alert_key)
         .select_from(timeline_changes.join(alerts, C.event_id == sa.cast(A.alert_id, sa.String)))
         .where(C.household_id.in_(household_ids), C.seq > after, C.kind.in_(FEED_KINDS))
         .order_by(C.seq))
    if upto is not None:
        q = q.where(C.seq <= upto)
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        opened(seal, r).pop("alert_key")
        for k in ("created_at", "acknowledged_at", "resolved_at"):
            r[k] = as_utc(r[k]).isoformat() if r[k] is not None else None
    return rows
