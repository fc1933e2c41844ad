"""The sharing step: for each change to a child's record, decide who may see each shareable record.

``process_changes(store, changes)`` is called by :mod:`hub.sharing.follower` with a run of the
timeline's change feed (and may be called again with the same run: it is idempotent).

1. ConsentGranted / ConsentWithdrawn entries that joined, changed in or left a child's record →
   ``consent_directives`` (FHIR R4 Consent converted with ``consent.fhir.from_fhir``). A consent
   event for a subject not linked yet is parked like any event and reaches the feed when its link
   does; a wrong link undone leaves its directives without a child until the next link.
2. For every child the changes touch (a record of theirs, a link, a directive), every shareable
   record × every recipient (team around the child other than the producing service, parents, young
   person) that has no decision yet is decided with ``ConsentEngine.decide_strictest`` — consent in
   force at the event's time and now. The event-time side is the record's issue time, or, when the
   share rests on a directive made later, that directive's ``made_at`` (so a later consent can
   permit an earlier report, while a refusal in force when the report was written still binds).
   Each decision is one ``share_decisions`` row (unique per information id + version + recipient +
   seq) and one ``deliveries`` row: ``queued`` for a permit, ``withheld`` (why) for deny / hold.
3. When a child's directives change (granted, withdrawn), every current decision of that child is
   re-decided: withheld → queued when now permitted (exactly once: one delivery row per information
   version and recipient), queued → cancelled when no longer permitted, and a ``withdrawal_notice``
   delivery for recipients who already hold a copy.
4. Queued shares of an older version of a record, or of a record no longer in the child's record
   (entered in error, subject unlinked), are cancelled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consent import Child, ConsentError, Directive, DirectiveSet, Grantor
from consent.fhir import from_fhir
from hub.core.logging import get_logger
from hub.core.records import catalogue as record_types
from hub.db import erasure_guard
from hub.db.schema import (
    consent_directives,
    deliveries,
    household_members,
    identity_links,
    share_decisions,
    timeline_entries,
)
from hub.db.store import Store, as_utc, utcnow
from hub.sharing.decisions import ChildState, SharingResult, engine, sync_child
from hub.sharing.model import child_for_engine, shareable_from
from hub.stream import readmodel
from hub.stream.team import TeamMember, team_around

log = get_logger(__name__)
CD = consent_directives.c
SD = share_decisions.c
DL = deliveries.c
L = identity_links.c
_DIRECTIVE_CACHE: dict[tuple[str, int, str], Directive] = {}


# ---------------------------------------------------------------------------------------- directives

def _aware(value: Any) -> datetime | None:
    return None if value is None else as_utc(value)


def parse_directive(fhir_json: str, child_id: str, withdrawn_at: datetime | None) -> Directive:
    """A stored FHIR Consent as a directive of the hub child (its patient reference re-pointed there)."""
    key = (fhir_json, 0, child_id)
    d = _DIRECTIVE_CACHE.get(key)
    if d is None:
        d = from_fhir(json.loads(fhir_json))
        made_by = child_id if d.made_by_role is Grantor.YOUNG_PERSON else d.made_by
        d = replace(d, child_id=child_id, made_by=made_by)
        if len(_DIRECTIVE_CACHE) > 10000:
            _DIRECTIVE_CACHE.clear()
        _DIRECTIVE_CACHE[key] = d
    if withdrawn_at is not None:
        d = replace(d, withdrawn_at=max(withdrawn_at, d.made_at))
    return d


def load_child(conn: Connection, child_id: str) -> Child:
    """The child as the engine needs them: their birth date and recorded competence from enrolment."""
    return _children(conn, [child_id])[child_id]


def _children(conn: Connection, child_ids: list[str]) -> dict[str, Child]:
    M = household_members.c
    known = {r.member_id: child_for_engine(r.member_id, r.date_of_birth, r.competent_from) for r in conn.execute(
        sa.select(M.member_id, M.date_of_birth, M.competent_from).where(M.member_id.in_(child_ids)))}
    return {c: known.get(c) or child_for_engine(c) for c in child_ids}


def _directive_set(child: Child, rows: Sequence[Any]) -> tuple[DirectiveSet, dict[str, Directive]]:
    found: dict[str, Directive] = {}
    for r in rows:
        try:
            d = parse_directive(r.fhir_json, child.id, _aware(r.withdrawn_at))
        except (ConsentError, ValueError) as exc:
            log.warning("sharing.directive_unusable", directive=r.directive_id, error=str(exc)[:200])
            continue
        if d.made_by_role is Grantor.YOUNG_PERSON and not child.young_person_controls(d.made_at):
            log.info("sharing.young_person_directive_not_in_force", directive=r.directive_id)
            continue  # made before 16 without recorded competence: not theirs to make yet
        found[d.id] = d
    return engine().compile(child, found.values()), found


def _upsert_grant(conn: Connection, record: dict[str, Any], home: tuple[str, str] | None, now: datetime) -> bool:
    meta = record["meta"]
    did, version = record["directive_id"], int(meta.get("source_version", 1))
    cur = conn.execute(sa.select(consent_directives).where(CD.directive_id == did)).first()
    if cur is not None and cur.fhir_json is not None and cur.source_version >= version:
        return False
    status, error, made_at, withdrawn = "active", None, None, None
    try:
        d = from_fhir(json.loads(record["fhir_consent"]))
        made_at, withdrawn = d.made_at, d.withdrawn_at
        if d.id != did:
            raise ValueError(f"the Consent identifier {d.id} is not the event's directive id")
        if withdrawn is not None:
            status = "withdrawn"
    except (ConsentError, ValueError) as exc:
        status, error = "invalid", str(exc)[:2000]
    if meta.get("status") == "entered_in_error":
        status, error = "invalid", "entered in error by its sender"
    if cur is not None and cur.status == "withdrawn" and status == "active":
        status, withdrawn = "withdrawn", _aware(cur.withdrawn_at)  # the withdrawal arrived first
    row = dict(directive_id=did, subject=meta["subject"], child_id=home[1] if home else None,
               household_id=home[0] if home else None, event_id=meta["event_id"], source_version=version,
               fhir_json=record["fhir_consent"], status=status, made_at=made_at, withdrawn_at=withdrawn,
               error=error, updated_at=now)
    if cur is None:
        conn.execute(consent_directives.insert(), row)
    else:
        conn.execute(consent_directives.update().where(CD.directive_id == did).values(**row))
    return True


def _apply_withdrawal(conn: Connection, record: dict[str, Any], home: tuple[str, str] | None,
                      now: datetime) -> bool:
    meta = record["meta"]
    did, at = record["directive_id"], meta["occurred_at"]
    cur = conn.execute(sa.select(consent_directives).where(CD.directive_id == did)).first()
    if cur is None:  # withdrawal before the grant: remember it
        conn.execute(consent_directives.insert(), dict(
            directive_id=did, subject=meta["subject"], child_id=home[1] if home else None,
            household_id=home[0] if home else None, event_id=None, source_version=0, fhir_json=None,
            status="withdrawn", made_at=None, withdrawn_at=at, error=None, updated_at=now))
        return True
    if cur.status == "withdrawn" and cur.withdrawn_at is not None and as_utc(cur.withdrawn_at) <= at:
        return False
    if cur.status == "invalid":
        return False
    conn.execute(consent_directives.update().where(CD.directive_id == did).values(
        status="withdrawn", withdrawn_at=at, updated_at=now))
    return True


def _load_states(conn: Connection, child_ids: list[str],
                 only: set[str] | None = None) -> dict[str, ChildState]:
    """The children's deliveries, current decisions and directives, in four queries.

    ``only``: load deliveries and decisions of these information ids alone (the children's new
    records, when nothing else of theirs needs deciding).
    """
    states = {c: ChildState() for c in child_ids}
    info_ids = sorted(only) if only is not None else None
    for i in range(0, len(child_ids), 300):
        chunk = child_ids[i:i + 300]
        for c, child in _children(conn, chunk).items():
            states[c].child = child
        dl_where = [DL.child_id.in_(chunk)]
        sd_where = [SD.child_id.in_(chunk), SD.current.is_(True)]
        if info_ids is not None:
            dl_where.append(DL.information_id.in_(info_ids))
            sd_where.append(SD.information_id.in_(info_ids))
        for d in conn.execute(sa.select(DL.child_id, DL.information_id, DL.information_version, DL.recipient_key,
                                        DL.kind, DL.state, DL.delivery_id, DL.round).where(
                *dl_where).order_by(DL.round)):
            st = states[d.child_id]
            st.deliveries[(d.information_id, d.information_version, d.recipient_key, d.kind)] = d  # latest round
            st.rounds[(d.information_id, d.information_version, d.recipient_key)] = d.round
        for dec in conn.execute(sa.select(SD.child_id, SD.information_id, SD.information_version, SD.recipient_key,
                                          SD.decision_id, SD.seq, SD.outcome, SD.rule_id, SD.directive_ids,
                                          SD.basis, SD.ruleset_version).where(*sd_where)):
            states[dec.child_id].current[(dec.information_id, dec.information_version, dec.recipient_key)] = dec
        for r in conn.execute(sa.select(CD.child_id, CD.directive_id, CD.fhir_json, CD.status, CD.withdrawn_at).where(
                CD.child_id.in_(chunk), CD.status.in_(("active", "withdrawn")), CD.fhir_json.is_not(None))):
            states[r.child_id].directive_rows.append(r)
    return states


def _records(store: Store, homes: list[tuple[str, str]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``readmodel.child_records`` for many children in one query (same shape and order).

    Times inside the records stay ISO strings: the sharing step parses the one it uses (the issue
    time, in ``shareable_from``) and passes the others through to payloads as they are.
    """
    T = timeline_entries.c
    out: dict[tuple[str, str], list[dict[str, Any]]] = {h: [] for h in homes}
    with store.engine.connect() as conn:
        for i in range(0, len(homes), 300):
            chunk = homes[i:i + 300]
            q = (sa.select(L.household_id, L.child_id, T.event_id, T.record_type, T.occurred_at, T.record)
                 .select_from(identity_links.join(timeline_entries, T.subject == L.subject))
                 .where(sa.tuple_(L.household_id, L.child_id).in_(chunk), L.active.is_(True),
                        T.status == "active").order_by(T.occurred_at, T.event_id))
            for r in conn.execute(q):
                out[(r.household_id, r.child_id)].append({
                    "event_id": r.event_id, "record_type": r.record_type, "occurred_at": as_utc(r.occurred_at),
                    "record": json.loads(r.record)})
    return out


def _team_grew(entries: list[dict[str, Any]], team: list[TeamMember], new: set[str]) -> bool:
    """Did the entries ``new`` bring the team around the child (``team``) a service or a named professional?"""
    def members(members_of: list[TeamMember]) -> set[tuple[str, str, str]]:
        return {(m.agency_id, m.service, p) for m in members_of for p in ("", *m.professionals)}
    if not any(e["record_type"] in record_types().team_joins for e in entries if e["event_id"] in new):
        return False
    return bool(members(team) - members(team_around([e for e in entries if e["event_id"] not in new])))


def _sync_child(conn: Connection, child_id: str, household_id: str, entries: list[dict[str, Any]],
                now: datetime, *, redecide: bool, trigger: str, result: SharingResult,
                state: ChildState | None = None, sink: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
                only: set[str] | None = None, team: list[TeamMember] | None = None) -> None:
    """Bring one child's decisions up to date.

    ``only`` (with a ``state`` loaded for those ids): the ids of the child's new or changed
    shareable records, when nothing else changed and they brought the team no new member (who
    would be owed the earlier records too) — those alone are decided.
    """
    mine = entries if only is None else [e for e in entries if e["event_id"] in only]
    infos = [s for s in (shareable_from(e, child_id) for e in mine) if s is not None]
    current_versions = {s.event_id: s.version for s in infos}
    if only is not None:  # a changed record that left the child's record has no version now
        current_versions.update({iid: 0 for iid in only if iid not in current_versions})
    if state is None:
        state = _load_states(conn, [child_id])[child_id]
    # queued shares of superseded versions or of records no longer in this child's record
    for (iid, ver, _rk, _kind), r in state.deliveries.items():
        if r.state != "queued":
            continue
        why = None
        if not current_versions.get(iid):
            why = "the record is no longer in this child's record (entered in error or unlinked)"
        elif ver < current_versions[iid]:
            why = f"superseded by version {current_versions[iid]}"
        if why:
            conn.execute(deliveries.update().where(DL.delivery_id == r.delivery_id, DL.state == "queued")
                         .values(state="cancelled", why=why, closed_at=now))
            result.cancelled += 1
    if not infos:
        return
    ds, directives = _directive_set(state.child or child_for_engine(child_id), state.directive_rows)
    new_decisions, new_deliveries = sync_child(conn, child_id, household_id, entries, infos, state, ds, directives,
                                               now, redecide=redecide, trigger=trigger, result=result, team=team)
    if sink is not None:  # the caller inserts every child's rows at once
        sink[0].extend(new_decisions)
        sink[1].extend(new_deliveries)
        return
    if new_decisions:
        conn.execute(share_decisions.insert(), new_decisions)
    if new_deliveries:
        conn.execute(deliveries.insert(), new_deliveries)


# ---------------------------------------------------------------------------------------- the step

@dataclass(frozen=True)
class Change:
    """One row of the timeline's change feed, with the entry's type and status as they are now."""

    seq: int
    household_id: str
    child_id: str
    event_id: str
    kind: str  # added | updated | joined | left
    record_type: str
    status: str


def relevant(change: Change) -> bool:
    """Whether a change can alter a decision of the child: a link, or a shareable, consent or team-joining record
    (a new team member may now be owed earlier records); other changes are skipped."""
    facts = record_types()
    return (change.kind in ("joined", "left") or change.record_type in facts.shareable
            or change.record_type in facts.consent_types or change.record_type in facts.team_joins)


def process_changes(store: Store, changes: Sequence[Change], *, now: datetime | None = None,
                    finish: Callable[[Connection], None] | None = None) -> SharingResult:
    """Run the sharing step for a run of the change feed, in one transaction; idempotent.

    ``finish(conn)`` runs inside that transaction before it commits (the follower moves its cursor
    there, so decisions and the cursor commit together).
    """
    last: Exception | None = None
    for _attempt in range(3):
        try:
            return _process(store, [c for c in changes if relevant(c)], now or utcnow(), finish)
        except sa.exc.IntegrityError as exc:  # another process decided the same child at the same time
            last = exc
            log.info("sharing.concurrent_retry")
    assert last is not None
    raise last


def _consent_records(store: Store, changes: list[Change]) -> dict[str, dict[str, Any]]:
    ids = sorted({c.event_id for c in changes})
    out: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(ids), 500):
            for r in conn.execute(sa.select(timeline_entries.c.event_id, timeline_entries.c.record).where(
                    timeline_entries.c.event_id.in_(ids[i:i + 500]))):
                out[r.event_id] = readmodel._parse_times(json.loads(r.record))
    return out


def _apply_consent(conn: Connection, change: Change, record: dict[str, Any], now: datetime) -> bool:
    """A consent entry that joined, left or changed in a child's record → ``consent_directives``."""
    did = record["directive_id"]
    if change.kind == "left":  # a wrong link undone: the directive waits for its subject's next link
        return conn.execute(consent_directives.update().where(
            CD.directive_id == did, CD.child_id == change.child_id).values(
            child_id=None, household_id=None, updated_at=now)).rowcount > 0
    home = (change.household_id, change.child_id)
    if change.record_type == "ConsentGranted":
        changed = _upsert_grant(conn, record, home, now)
    else:
        changed = _apply_withdrawal(conn, record, home, now)
    moved = conn.execute(consent_directives.update().where(
        CD.directive_id == did, sa.or_(CD.child_id.is_(None), CD.child_id != change.child_id)).values(
        child_id=change.child_id, household_id=change.household_id, updated_at=now)).rowcount
    return changed or moved > 0


def _without_links(conn: Connection, homes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The children among ``homes`` with no active identity link now."""
    linked: set[tuple[str, str]] = set()
    ordered = sorted(homes)
    for i in range(0, len(ordered), 300):
        linked |= {(r.household_id, r.child_id) for r in conn.execute(
            sa.select(L.household_id, L.child_id).where(
                sa.tuple_(L.household_id, L.child_id).in_(ordered[i:i + 300]), L.active.is_(True)).distinct())}
    return homes - linked


def _process(store: Store, changes: list[Change], now: datetime,
             finish: Callable[[Connection], None] | None) -> SharingResult:
    result = SharingResult()
    consents = [c for c in changes if c.record_type in record_types().consent_types]
    records = _consent_records(store, consents) if consents else {}
    touched = {(c.household_id, c.child_id) for c in changes}
    # the children's records first (committed by the projection), then one transaction for everything
    entries = _records(store, sorted(touched))
    consent_children: set[tuple[str, str]] = set()
    with store.engine.begin() as conn:
        erasure_guard.hold_shared(conn)  # an erasure's purge and this pass never interleave
        gone = _without_links(conn, touched)
        for home in gone:  # erased (or every link undone) since their records were read: decide nothing
            entries[home] = []
        consents = [c for c in consents if c.kind == "left" or (c.household_id, c.child_id) not in gone]
        for c in consents:  # in feed order
            if c.event_id in records and _apply_consent(conn, c, records[c.event_id], now):
                consent_children.add((c.household_id, c.child_id))
        children = sorted(touched)
        # children whose only changes are shareable records added or updated: decide those alone
        new: dict[tuple[str, str], set[str]] = {}
        whole: set[tuple[str, str]] = set(consent_children) | gone
        for c in changes:
            home = (c.household_id, c.child_id)
            if c.kind in ("added", "updated") and c.record_type in record_types().shareable:
                new.setdefault(home, set()).add(c.event_id)
            else:
                whole.add(home)
        teams = {h: team_around(entries[h]) for h in children}
        partial = {h: ids for h, ids in new.items() if h not in whole and not _team_grew(entries[h], teams[h], ids)}
        states = _load_states(conn, sorted({home[1] for home in children if home not in partial}))
        if partial:
            states |= _load_states(conn, sorted({c for _h, c in partial}), set().union(*partial.values()))
        sink: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
        for hh, child in children:
            redecide = (hh, child) in consent_children
            _sync_child(conn, child, hh, entries[(hh, child)], now, redecide=redecide,
                        trigger="consent_changed" if redecide else "event", result=result, state=states[child],
                        sink=sink, only=partial.get((hh, child)), team=teams[(hh, child)])
            result.children.add(child)
        if sink[0]:
            conn.execute(share_decisions.insert(), sink[0])
        if sink[1]:
            conn.execute(deliveries.insert(), sink[1])
        if finish is not None:
            finish(conn)
    if result.decisions:
        log.info("sharing.decided", decisions=result.decisions, queued=result.queued, withheld=result.withheld,
                 cancelled=result.cancelled, notices=result.notices, children=len(result.children))
    return result


def process_child(store: Store, household_id: str, child_id: str, *, redecide: bool = False,
                  now: datetime | None = None) -> SharingResult:
    """Decide (or re-decide) one child's records now — for tools and tests."""
    result = SharingResult()
    entries = readmodel.child_records(store, household_id, child_id)
    with store.engine.begin() as conn:
        _sync_child(conn, child_id, household_id, entries, now or utcnow(), redecide=redecide, trigger="manual",
                    result=result)
    return result
