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
   A child whose only changes in the run are new entries that share nothing (an appointment, an
   attendance, a waiting list: most of a busy feed) and whose recipients are the same with them as
   without (no new service or named professional, no change of purpose) has nothing to decide: its
   ledger is not loaded and its decisions stand (:func:`hub.sharing.settled.settled`;
   ``tests/sharing/test_settled_children.py`` checks the ledger against deciding every child whole). When the
   process kept what decides the child's recipients from an earlier pass (:mod:`hub.sharing.child_views`),
   that is told from the new entries alone and the child's record is not read at all
   (:func:`hub.sharing.settled.settled_by_view`); so are new reports from services and authors already in
   the team, decided for the recipients the view gives.
4. Queued shares of an older version of a record, or of a record no longer in the child's record
   (entered in error, subject unlinked), are cancelled.
5. A record that left the child's record with an undone link (and is still a live record,
   elsewhere or parked) has what was shared from it recalled (:func:`hub.sharing.ledger.plan_recall`).

One child's failure never holds up the others: when a pass fails, it is run again with each child in
a savepoint of its own; a child that fails then is rolled back alone, recorded in
``sharing_failures`` (:mod:`hub.sharing.failures`) and retried later, and the cursor moves on. The record of
a failure is cleared only when the child is decided whole (its retry, or a later pass that reads it whole),
never by a pass that decided only its new records or found nothing to decide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial as partial_fn
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consent import Directive, DirectiveSet
from hub.core.errors import LeaseLost
from hub.core.logging import get_logger
from hub.core.records import catalogue as record_types
from hub.db import erasure_guard
from hub.db.schema import consent_directives, identity_links, timeline_changes, timeline_entries
from hub.db.store import Store, utcnow
from hub.sharing import audit_trail, failures
from hub.sharing.apply import Inserts
from hub.sharing.child_state import directive_set, load_states
from hub.sharing.child_views import View, view_of
from hub.sharing.decisions import ChildState, SharingResult, sync_child
from hub.sharing.directives import consent_records, record_consent
from hub.sharing.model import Target, child_for_engine, shareable_from
from hub.sharing.record_memo import RecordMemo, child_records
from hub.sharing.rows import RowContext
from hub.sharing.settled import Change, relevant, settled, settled_by_view, team_grew
from hub.stream import readmodel
from hub.stream.team import team_around

log = get_logger(__name__)
L = identity_links.c
TC = timeline_changes.c
Home = tuple[str, str]  # (household id, child id)


def _sync_child(conn: Connection, child_id: str, household_id: str, entries: list[dict[str, Any]],
                now: datetime, *, redecide: bool, trigger: str, result: SharingResult,
                state: ChildState | None = None, inserts: Inserts | None = None,
                only: set[str] | None = None, targets: list[Target] | None = None) -> None:
    """Bring one child's decisions up to date.

    ``only`` (with a ``state`` loaded for those ids): the ids of the child's new or changed
    shareable records, when nothing else changed and they brought the team no new member (who
    would be owed the earlier records too) — those alone are decided. ``targets``: the child's recipients, when
    the caller has them (:mod:`hub.sharing.child_views`; needed when ``entries`` holds only the new records).
    """
    mine = entries if only is None else [e for e in entries if e["event_id"] in only]
    if state is None:
        state = load_states(conn, [child_id])[child_id]
    infos = [s for s in (shareable_from(e, child_id, released=e["event_id"] in state.released) for e in mine)
             if s is not None]
    current_versions = {s.event_id: s.version for s in infos}
    if only is not None:  # a changed record that left the child's record has no version now
        current_versions.update({iid: 0 for iid in only if iid not in current_versions})
    ds: DirectiveSet | None = None
    directives: dict[str, Directive] = {}
    if infos:  # directives are read only for a child with something to decide
        ds, directives = directive_set(state.child or child_for_engine(child_id), state.directive_rows,
                                       state.override_rows, state.corporate_parent)
    recalled = _recalled(conn, state, entries) if only is None else set()
    sync_child(conn, RowContext(child_id, household_id, now, trigger), entries, infos, state, ds, directives,
               current_versions, redecide=redecide, result=result, inserts=inserts, recalled=recalled, targets=targets)


def _recalled(conn: Connection, state: ChildState, entries: list[dict[str, Any]]) -> set[str]:
    """Records with deliveries for the child that left their record while still live: an undone link took them."""
    gone = {k[0] for k in state.ledger.deliveries} - {e["event_id"] for e in entries}
    if not gone:
        return set()
    T = timeline_entries.c
    return {r[0] for r in conn.execute(sa.select(T.event_id).where(T.event_id.in_(sorted(gone)),
                                                                     T.status == "active"))}


# ---------------------------------------------------------------------------------------- the step

#: errors of the database connection itself: no child is to blame, the pass is retried whole
NOT_A_CHILDS = (LeaseLost, sa.exc.OperationalError, sa.exc.InterfaceError)


def process_changes(store: Store, changes: Sequence[Change], *, now: datetime | None = None,
                    finish: Callable[[Connection], None] | None = None,
                    retry: Sequence[tuple[str, str]] = (), memo: RecordMemo | None = None,
                    read_to: int | None = None) -> SharingResult:
    """Run the sharing step for a run of the change feed, in one transaction; idempotent.

    ``finish(conn)`` runs inside that transaction before it commits (the follower moves its cursor
    there, so decisions and the cursor commit together). ``retry``: (household, child) of children
    whose earlier pass failed, decided again in this one. When the pass keeps failing it is run with
    each child in a savepoint of its own: a child that fails is skipped and recorded for retry. ``memo``: the
    records opened by earlier passes (:mod:`hub.sharing.record_memo`), kept by the caller between passes.
    ``read_to``: the ``seq`` the change feed was read up to before this call (every change up to it had
    committed before the children's records are read): the views kept for later passes are of the records as
    of it (:func:`kept_views`), so they serve the next pass however far behind the feed the step runs.
    """
    mine = [c for c in changes if relevant(c)]
    if memo is not None:  # a change the step skips may still alter what a child's view holds: let it go
        memo.views.drop({(c.household_id, c.child_id) for c in changes if not relevant(c)})
    at = now or utcnow()
    for _attempt in range(2):
        try:
            return _process(store, mine, at, finish, retry, memo=memo, read_to=read_to)
        except sa.exc.IntegrityError:  # another process decided the same child at the same time
            log.info("sharing.concurrent_retry")
        except NOT_A_CHILDS:
            raise
        except Exception as exc:  # one child's failure, found below
            log.warning("sharing.pass_failed", error=type(exc).__name__)
            break
    return _process(store, mine, at, finish, retry, isolate=True, memo=memo, read_to=read_to)


def _without_links(conn: Connection, homes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The children among ``homes`` with no active identity link now."""
    linked: set[tuple[str, str]] = set()
    ordered = sorted(homes)
    for i in range(0, len(ordered), 300):
        linked |= {(r.household_id, r.child_id) for r in conn.execute(
            sa.select(L.household_id, L.child_id).where(
                sa.tuple_(L.household_id, L.child_id).in_(ordered[i:i + 300]), L.active.is_(True)).distinct())}
    return homes - linked


def kept_views(conn: Connection, views: dict[Home, View], entries: dict[Home, list[dict[str, Any]]],
               read_to: int | None, position: int) -> dict[Home, View]:
    """The views of this pass's whole reads to keep for later passes. A view must hold no entry whose change a
    later pass will judge by it: an entry read ahead of the feed (its change after ``read_to``, committed before
    the record was read) may have brought a service into the team, and its change is what owes that service the
    earlier reports. So each view is taken back to the feed as this pass read it: entries added after
    ``read_to`` are left out of it and it is stamped ``read_to``; a child with an entry updated or a link joined
    or left after ``read_to`` keeps no view (its next change is read whole). Without ``read_to``, or nothing
    read ahead, the views as built, stamped with the feed's newest ``seq`` after the read."""
    if read_to is None or read_to >= position or not views:
        return dict(views)
    ahead: dict[Home, set[str]] = {}
    moved: set[Home] = set()
    homes = sorted(views)
    for i in range(0, len(homes), 300):
        q = sa.select(TC.household_id, TC.child_id, TC.event_id, TC.kind).where(
            TC.seq > read_to, TC.seq <= position, sa.tuple_(TC.household_id, TC.child_id).in_(homes[i:i + 300]))
        for r in conn.execute(q):
            home = (r.household_id, r.child_id)
            if r.kind == "added":
                ahead.setdefault(home, set()).add(r.event_id)
            elif r.kind in ("updated", "joined", "left"):
                moved.add(home)
    out: dict[Home, View] = {}
    for home, view in views.items():
        if home in moved:
            continue
        later = ahead.get(home)
        if not later:
            out[home] = replace(view, position=read_to)
            continue
        before = [e for e in entries[home] if e["event_id"] not in later]
        out[home] = view_of(team_around(before), before, read_to)
    return out


def _process(store: Store, changes: list[Change], now: datetime, finish: Callable[[Connection], None] | None,
             retry: Sequence[tuple[str, str]] = (), *, isolate: bool = False,
             memo: RecordMemo | None = None, read_to: int | None = None) -> SharingResult:
    result = SharingResult()
    consents = [c for c in changes if c.record_type in record_types().consent_types]
    records = consent_records(store, [c.event_id for c in consents]) if consents else {}
    # children told from their new entries and what an earlier pass kept of them, without reading their record:
    # with nothing to decide (quiet), or only new records to decide for the recipients they had (viewed)
    quiet, viewed = settled_by_view(store, changes, memo, set(retry)) if memo is not None else (set(), {})
    touched = ({(c.household_id, c.child_id) for c in changes} | set(retry)) - quiet
    # the children's records first (committed by the projection), then one transaction for everything
    entries = child_records(store, sorted(touched - set(viewed)), memo)
    entries.update({home: v.entries for home, v in viewed.items()})
    consent_children: set[tuple[str, str]] = set()
    failed: set[tuple[str, str]] = set()
    with store.engine.begin() as conn:
        position = conn.execute(sa.select(sa.func.max(timeline_changes.c.seq))).scalar() or 0  # after the read
        erasure_guard.hold_shared(conn)  # an erasure's purge and this pass never interleave
        gone = _without_links(conn, touched)
        for home in gone:  # erased (or every link undone) since their records were read: decide nothing
            if memo is not None:
                memo.forget(e["event_id"] for e in entries[home])
            entries[home] = []
            viewed.pop(home, None)
        consents = [c for c in consents if c.kind == "left" or (c.household_id, c.child_id) not in gone]
        inserts = Inserts()  # new rows and audit records, written at once (each child's alone when isolated)
        for c in consents:  # in feed order
            home = (c.household_id, c.child_id)
            if c.event_id in records and home not in failed and _guarded(
                    conn, isolate, home, now, failed, partial_fn(_consent, conn, c, home, records[c.event_id], now,
                                                                 Inserts() if isolate else inserts, isolate)):
                consent_children.add(home)
        children = sorted(touched - failed)
        # children whose only changes are shareable records added or updated: decide those alone
        new: dict[tuple[str, str], set[str]] = {}
        whole: set[tuple[str, str]] = set(consent_children) | gone | set(retry)
        for c in changes:
            home = (c.household_id, c.child_id)
            if home in quiet or home in viewed:
                continue
            if c.kind in ("added", "updated") and c.record_type in record_types().shareable:
                new.setdefault(home, set()).add(c.event_id)
            else:
                whole.add(home)
        teams = {h: team_around(entries[h]) for h in children if h not in viewed}
        partial = {h: ids for h, ids in new.items()
                   if h in teams and h not in whole and not team_grew(entries[h], teams[h], ids)}
        partial |= {h: v.ids for h, v in viewed.items() if h not in failed}
        # what decides each child's recipients, as this pass read their record: their recipients now, and kept
        views = {h: view_of(team, entries[h], position) for h, team in teams.items()}
        keep = kept_views(conn, views, entries, read_to, position) if memo is not None else {}
        stand = settled([c for c in changes if (c.household_id, c.child_id) in teams], entries, views,
                        set(consent_children) | gone | set(retry))
        result.children |= {child for _h, child in stand | quiet}
        children = [home for home in children if home not in stand]
        states = load_states(conn, sorted({home[1] for home in children if home not in partial}))
        if partial:
            states |= load_states(conn, sorted({c for _h, c in partial}), set().union(*partial.values()))
        retried = set(retry)
        for hh, child in children:
            # a child retried after a failed pass may have missed a consent change: decided again whole
            redecide = (hh, child) in consent_children or (hh, child) in retried
            mine = Inserts() if isolate else inserts

            def decide(hh: str = hh, child: str = child, redecide: bool = redecide, mine: Inserts = mine) -> bool:
                home = (hh, child)
                targets = viewed[home].targets if home in viewed else views[home].targets(hh, child)
                _sync_child(conn, child, hh, entries[home], now, redecide=redecide,
                            trigger="consent_changed" if redecide else "event", result=result, state=states[child],
                            inserts=mine, only=partial.get(home), targets=targets)
                if isolate:
                    mine.write(conn)
                return True

            if _guarded(conn, isolate, (hh, child), now, failed, decide):
                result.children.add(child)
        inserts.write(conn)
        # a failure waiting for its retry is cleared only by deciding the child whole
        failures.clear(conn, [c for h, c in children if (h, c) not in failed and (h, c) not in partial])
        if finish is not None:
            finish(conn)
    if memo is not None:  # the views are kept for the next passes
        memo.views.drop(failed | gone | (set(views) - set(keep)))
        for home, view in keep.items():
            if home not in failed and home not in gone:
                memo.views.put(home, view)
    if result.decisions or failed:
        log.info("sharing.decided", decisions=result.decisions, queued=result.queued, withheld=result.withheld,
                 cancelled=result.cancelled, notices=result.notices, recalls=result.recalls,
                 children=len(result.children), failed=len(failed))
    return result


def _consent(conn: Connection, c: Change, home: tuple[str, str], record: dict[str, Any], now: datetime,
             inserts: Inserts, isolate: bool) -> bool:
    """Record a consent entry's change of the child's directives, with its audit record; True if it mattered."""
    if not record_consent(conn, c.kind, c.record_type, home, record, now):
        return False
    row = conn.execute(sa.select(consent_directives).where(
        consent_directives.c.directive_id == record["directive_id"])).first()
    if row is not None:
        inserts.audit.append(audit_trail.consent_entry(row._mapping))
    if isolate:
        inserts.write(conn)
    return True


def _guarded(conn: Connection, isolate: bool, home: tuple[str, str], now: datetime, failed: set[tuple[str, str]],
             work: Callable[[], bool]) -> bool:
    """Run one child's ``work``; isolated, in a savepoint whose failure is recorded for retry, not raised."""
    if not isolate:
        return work()
    savepoint = conn.begin_nested()
    try:
        done = work()
    except NOT_A_CHILDS:
        raise
    except Exception as exc:
        savepoint.rollback()
        failed.add(home)
        failures.record(conn, home[0], home[1], exc, now)
        log.warning("sharing.child_failed", child=home[1], error=type(exc).__name__)
        return False
    savepoint.commit()
    return done


def redecide_child(store: Store, household_id: str, child_id: str, *, trigger: str,
                   now: datetime | None = None) -> SharingResult:
    """Take every decision of one child again now (a hold released, a safeguarding override made), beside
    the follower: the erasure guard held, retried when another pass decided the child at the same time."""
    last: Exception | None = None
    for _attempt in range(3):
        result = SharingResult()
        entries = readmodel.child_records(store, household_id, child_id)
        try:
            with store.engine.begin() as conn:
                erasure_guard.hold_shared(conn)
                _sync_child(conn, child_id, household_id, entries, now or utcnow(), redecide=True, trigger=trigger,
                            result=result)
            return result
        except sa.exc.IntegrityError as exc:
            last = exc
            log.info("sharing.concurrent_retry")
    assert last is not None
    raise last


def process_child(store: Store, household_id: str, child_id: str, *, redecide: bool = False,
                  now: datetime | None = None) -> SharingResult:
    """Decide (or re-decide) one child's records now — for tools and tests."""
    result = SharingResult()
    entries = readmodel.child_records(store, household_id, child_id)
    with store.engine.begin() as conn:
        _sync_child(conn, child_id, household_id, entries, now or utcnow(), redecide=redecide, trigger="manual",
                    result=result)
    return result
