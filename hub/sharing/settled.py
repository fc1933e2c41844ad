"""Which children a sharing pass has nothing to decide for, and which it may decide in part.

* :func:`relevant`: the changes that can alter a decision at all (a link, a shareable, consent or
  team-joining record); the others are skipped.
* :func:`team_grew`: whether new entries brought the team around a child a service or a named professional
  (who would be owed the child's earlier records).
* :func:`settled`: the children whose only changes are new entries that share nothing and whose recipients
  are the same with them as without, judged from each child's whole record.
* :func:`settled_by_view`: the same judgment from the new entries alone and what the last whole read kept
  of the child (:mod:`hub.sharing.child_views`), so that the whole record is not read at all; and the
  children whose new shareable records can be decided that way too (no new recipient among them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub.core.records import catalogue as record_types
from hub.db.store import Store
from hub.sharing.child_views import View, keeps_recipients
from hub.sharing.model import Target, shareable_from, targets_for
from hub.sharing.record_memo import RecordMemo, entries_by_id
from hub.stream.team import TeamMember, team_around

Home = tuple[str, str]  # (household id, child id)


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


def team_grew(entries: list[dict[str, Any]], team: list[TeamMember], new: set[str]) -> bool:
    """Did the entries ``new`` bring the team around the child (``team``) a service or a named professional?"""
    def members(members_of: list[TeamMember]) -> set[tuple[str, str, str]]:
        return {(m.agency_id, m.service, p) for m in members_of for p in ("", *m.professionals)}
    if not any(e["record_type"] in record_types().team_joins for e in entries if e["event_id"] in new):
        return False
    return bool(members(team) - members(team_around([e for e in entries if e["event_id"] not in new])))


def _added(changes: Sequence[Change], whole: set[Home]) -> tuple[dict[Home, set[str]], set[Home]]:
    """The ids each child's changes added, and the children with any other change (or in ``whole``)."""
    added: dict[Home, set[str]] = {}
    mixed: set[Home] = set(whole)
    for c in changes:
        home = (c.household_id, c.child_id)
        if c.kind == "added":
            added.setdefault(home, set()).add(c.event_id)
        else:
            mixed.add(home)
    return added, mixed


def settled(changes: Sequence[Change], entries: dict[Home, list[dict[str, Any]]], views: dict[Home, View],
            whole: set[Home]) -> set[Home]:
    """The children with nothing to decide: every change of theirs added an entry that shares nothing (an
    appointment, an attendance, a waiting list) and their recipients are the same with those entries as
    without (no new service or named professional, no change of purpose). Their decisions stand as the last
    pass left them, so neither their ledger is loaded nor is anything planned (most of a busy feed). ``views``:
    each child's view of the record as read (:mod:`hub.sharing.child_views`), whose recipients are those with the
    new entries."""
    added, mixed = _added(changes, whole)
    out: set[Home] = set()
    for home, ids in added.items():
        if home in mixed or home not in views:
            continue
        mine = [e for e in entries[home] if e["event_id"] in ids]
        if len(mine) != len(ids) or any(shareable_from(e, home[1]) is not None for e in mine):
            continue
        before = [e for e in entries[home] if e["event_id"] not in ids]
        if views[home].targets(*home) == targets_for(team_around(before), before, *home):
            out.add(home)
    return out


@dataclass(frozen=True)
class Viewed:
    """A child whose new entries all keep the recipients of its view, some of them shareable: those records alone
    are decided, for ``targets``, without the child's whole record. ``entries``: the new entries, opened."""

    ids: set[str]
    entries: list[dict[str, Any]]
    targets: list[Target]


def settled_by_view(store: Store, changes: Sequence[Change], memo: RecordMemo,
                    whole: set[Home]) -> tuple[set[Home], dict[Home, Viewed]]:
    """The children told from their new entries and their view (:mod:`hub.sharing.child_views`) alone, without
    reading their whole record: each has a view older than all their changes, every change added an active
    entry, and each such entry, opened alone, surely keeps the recipients of the view. Those whose new entries
    share nothing have nothing to decide (as :func:`settled` would find); the others (``Viewed``) have only
    their new shareable records to decide, for the recipients the view has."""
    added, mixed = _added(changes, whole)
    facts = record_types()
    first: dict[Home, int] = {}
    for c in changes:
        home = (c.household_id, c.child_id)
        first[home] = min(first.get(home, c.seq), c.seq)
        if c.status != "active" or c.record_type in facts.consent_types:
            mixed.add(home)
    candidates = {home: ids for home, ids in added.items()
                  if home not in mixed and (view := memo.views.get(home)) is not None and view.position < first[home]}
    if not candidates:
        return set(), {}
    opened = entries_by_id(store, sorted(set().union(*candidates.values())), memo)
    quiet: set[Home] = set()
    viewed: dict[Home, Viewed] = {}
    for home, ids in candidates.items():
        view = memo.views.get(home)  # refreshed with the memo: let go if an erasure was made meanwhile
        if view is None or any(i not in opened for i in ids):
            continue
        mine = sorted((opened[i] for i in ids), key=lambda e: (e["occurred_at"], e["event_id"]))
        if not all(keeps_recipients(view, e) for e in mine):
            continue
        shared = {e["event_id"] for e in mine if shareable_from(e, home[1]) is not None}
        if shared:
            viewed[home] = Viewed(shared, mine, view.targets(*home))
        else:
            quiet.add(home)
    return quiet, viewed
