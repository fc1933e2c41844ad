"""The read policy applied to a family's data: what one reader may see of each entry.

The policy is data beside the consent rule set (``consent/rulesets/read-policy.json``) and is decided
by pure code (:mod:`consent.reading`); this module supplies the facts it decides on and shapes the
answer. Every read path of family data goes through it: the timeline and its pages, the live
streams and their resume, the team around a child, appointments, readiness, family copies,
transparency and the demo's printout.

It lives in ``hub/sharing`` because the facts come from two places below it: the reader's
relationship to the child (enrolment: household members, parental responsibility, dates of birth,
``hub/family``) and the family's consent state (the children's directives, compiled by the consent
engine as the sharing step does, :mod:`hub.sharing.child_state`). The API layer above only builds a
:class:`ReadView` for the caller and hands it to the read queries.

Facts per entry: the reader's relation to the entry's child (a parent's depends on whether the child
controls their own record: 16, or recorded competence); what the directives say for this reader
(a coordinator: purpose care coordination, recipient the coordinator; a parent of a young person:
the young person's own directives); the entry's category and record type (restricted or not), a
disclosure hold (``disclosure_hold`` on the record, lifted by ``released``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa

from consent import Category, Child, DirectiveSet, Information, Purpose, Recipient, RecipientKind, Sector
from consent.evaluation import Evaluation
from consent.reading import (
    ConsentAnswer,
    EntryFacts,
    ReadDecision,
    Reader,
    ReadPolicy,
    Relation,
    Visibility,
    load_read_policy,
)
from hub.core import records
from hub.db.schema import consent_directives, household_members, identity_links, share_decisions
from hub.db.sealed import Sealer, sealer
from hub.db.store import Store, utcnow
from hub.governance.auth import Principal
from hub.sharing.child_state import StoredDirective, directive_set
from hub.sharing.model import child_for_engine
from hub.stream.readmodel import entries_by_id

M = household_members.c
CD = consent_directives.c
L = identity_links.c
SD = share_decisions.c
_SECTORS = {"health": Sector.HEALTH, "social_care": Sector.SOCIAL_CARE, "education": Sector.EDUCATION}
HELD_KIND = "HeldItem"
WITHHELD = "details withheld"
#: record fields a minimised (redacted) record keeps, so the team and appointments still add up
_STRUCTURE = ("service", "school", "start", "new_start", "appointment_id", "outcome", "outcome_kind")
_META = ("event_id", "source_id", "source_version", "occurred_at", "category", "status")
#: row keys the policy decides on that a reader is not shown as such
_FACTS_ONLY = ("held", "third_party")


@dataclass
class Household:
    """What the read policy needs to know about one household: its children and their directives."""

    household_id: str
    children: dict[str, Child] = field(default_factory=dict)
    responsible: dict[str, bool] = field(default_factory=dict)  # adult member id -> parental responsibility
    sets: dict[str, DirectiveSet] = field(default_factory=dict)


@cache
def people_query(with_directives: bool) -> sa.CompoundSelect:
    """One statement (built once) for households ``:ids``: their members, their linked children and, with
    ``with_directives``, those children's directives, as rows of one shape (kind member / linked / directive)."""
    ids: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
    none = [sa.cast(sa.null(), c.type) for c in (CD.directive_id, CD.fhir_json, CD.status, CD.withdrawn_at)]
    named = [c.label(f"p_{n}") for c, n in zip(
        (M.member_id, M.household_id, M.kind, M.parental_responsibility, M.date_of_birth, M.competent_from, *none),
        ("person", "household", "kind", "responsible", "born", "competent", "directive", "fhir", "status",
         "withdrawn"), strict=True)]  # one name each: the statement can be read as a subquery
    members = sa.select(*named).where(M.household_id.in_(ids))
    linked = sa.select(L.child_id, L.household_id, sa.literal("linked"), sa.literal(False), sa.null(), sa.null(),
                       *none).where(L.household_id.in_(ids), L.active.is_(True))
    if not with_directives:
        return sa.union_all(members, linked)
    children = sa.union(sa.select(M.member_id).where(M.household_id.in_(ids), M.kind == "child"),
                        sa.select(L.child_id).where(L.household_id.in_(ids), L.active.is_(True)))
    directives = sa.select(CD.child_id, sa.literal(""), sa.literal("directive"), sa.literal(False), sa.null(),
                           sa.null(), CD.directive_id, CD.fhir_json, CD.status, CD.withdrawn_at).where(
        CD.child_id.in_(children), CD.status.in_(("active", "withdrawn")), CD.fhir_json.is_not(None))
    return sa.union_all(members, linked, directives)


def load_households(store: Store, household_ids: Iterable[str], *, directives: bool | None = True
                    ) -> dict[str, Household]:
    """The children (birth dates, competence), adults and compiled directives of these households, in one
    query. ``directives``: False leaves them out (a reader whose view no consent decides); None uses them only
    for a child who controls their own record (a parent's view)."""
    ids = sorted(set(household_ids))
    if not ids:
        return {}
    with store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(people_query(directives is not False), {"ids": ids})]
    return households_from(sealer(store), ids, rows, directives=directives)


def households_from(seal: Sealer, household_ids: Iterable[str], rows: Iterable[tuple[Any, ...]], *,
                    directives: bool | None = True) -> dict[str, Household]:
    """:func:`load_households` from the rows of :func:`people_query` read elsewhere (e.g. with a timeline page);
    ``seal`` opens the children's sealed birth dates."""
    out = {h: Household(h) for h in sorted(set(household_ids))}
    linked: list[tuple[Household, str]] = []
    found: dict[str, list[Any]] = {}
    for r in rows:
        member, household, kind = r[0], r[1], r[2]
        if kind == "directive":
            fhir = seal.text(CD.fhir_json, r[6], r[7])
            found.setdefault(member, []).append(StoredDirective(member, r[6], fhir, r[8], r[9]))
        elif kind == "child":
            out[household].children[member] = child_for_engine(member, seal.date(M.date_of_birth, member, r[4]), r[5])
        elif kind == "linked":
            linked.append((out[household], member))
        else:
            out[household].responsible[member] = bool(r[3])
    for hh, linked_id in linked:
        hh.children.setdefault(linked_id, child_for_engine(linked_id))
    now = utcnow()
    for hh in out.values():
        for child_id, kid in hh.children.items():
            mine = found.get(child_id)
            if mine and (directives or kid.young_person_controls(now)):
                hh.sets[child_id] = directive_set(kid, mine)[0]
    return out


def _category(value: str) -> Category:
    try:
        return Category(value)
    except ValueError:
        return Category.GENERAL


def _issued(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


class ReadView:
    """One reader's view of the households loaded: decides and shapes every entry they ask for."""

    def __init__(self, principal: Principal | None, households: dict[str, Household], *,
                 now: datetime | None = None, policy: ReadPolicy | None = None) -> None:
        self.principal = principal
        self.households = households
        self.now = now or utcnow()
        self.policy = policy or load_read_policy()
        self._coordinator = Recipient(
            RecipientKind.COORDINATOR, agency_id=(principal.agency if principal and principal.agency
                                                  else "care-coordination"),
            sector=Sector.SOCIAL_CARE, service="care_coordination", role="coordinator",
            professional_id=principal.subject if principal else None)
        self._reason = bool(principal and principal.role == "ig_officer"
                            and len((principal.reason or "").strip()) >= 10)
        self._facts: dict[tuple[str, str, str, bool, bool], EntryFacts] = {}
        self._relations: dict[tuple[str, str], Relation] = {}

    @staticmethod
    def directives_for(principal: Principal | None) -> bool | None:
        """Whose directives the view needs: a coordinator's care coordination (all), a young person's say over
        what their parents see (a parent's view: those of children who control their record), else none."""
        role = principal.role if principal is not None else None
        return True if role == "coordinator" else None if role == "parent" else False

    @classmethod
    def load(cls, store: Store, principal: Principal | None, household_ids: Iterable[str]) -> ReadView:
        """The view for ``principal``, its household facts read in one statement."""
        return cls(principal, load_households(store, household_ids, directives=cls.directives_for(principal)))

    # -- facts -------------------------------------------------------------------------------------
    def relation(self, household_id: str, child_id: str) -> Relation:
        p = self.principal
        hh = self.households.get(household_id)
        if p is None or hh is None:
            return Relation.NONE
        if p.role == "coordinator":
            return Relation.COORDINATOR
        if p.role == "ig_officer":
            return Relation.IG
        if p.role == "agency":
            return Relation.AGENCY
        if p.household != household_id:
            return Relation.NONE
        controls = child_id in hh.children and hh.children[child_id].young_person_controls(self.now)
        if p.role == "parent":
            if p.member is not None and not hh.responsible.get(p.member, False):
                return Relation.NONE
            return Relation.PARENT_OF_YOUNG_PERSON if controls else Relation.PARENT
        if p.role == "young_person":
            if p.member != child_id:
                return Relation.SIBLING
            return Relation.SELF if controls else Relation.SELF_NOT_CONTROLLING
        return Relation.NONE

    def _consent(self, relation: Relation, household_id: str, row: dict[str, Any], restricted: bool) -> ConsentAnswer:
        if relation is Relation.COORDINATOR:
            recipient, purpose, yp_only = self._coordinator, Purpose.CARE_COORDINATION, False
        elif relation is Relation.PARENT_OF_YOUNG_PERSON:
            recipient = Recipient(RecipientKind.FAMILY, person_id=f"parents-{household_id}")
            purpose, yp_only = Purpose.FAMILY_COPY, True
        else:
            return ConsentAnswer.NONE
        child_id = row["child_id"]
        ds = self.households[household_id].sets.get(child_id)
        if ds is None or not ds.directives:
            return ConsentAnswer.NONE
        category = _category(row.get("category") or "general")
        if restricted and category not in ds.restricted_categories:  # a record type the read policy restricts
            ds = replace(ds, restricted_categories=ds.restricted_categories | {category})
        info = Information(
            id=row["event_id"], kind=records.catalogue().shareable.get(row["record_type"]) or row["record_type"],
            category=category, agency_id=row.get("agency_id") or "unknown",
            sector=_SECTORS.get(row.get("sector") or "", Sector.FAMILY), about=child_id, in_record_of=child_id,
            issued_at=_issued(row["occurred_at"]))
        ev: Evaluation = ds.evaluate(info, recipient, purpose, self.now, young_person_only=yp_only)
        if ev.decision is None:
            return ConsentAnswer.NONE
        return ConsentAnswer(ev.decision.value)

    def decide(self, household_id: str, row: dict[str, Any]) -> ReadDecision:
        """The read policy's decision on one entry (a timeline, stream or record row with ``held``)."""
        key = (row["record_type"], row.get("sector") or "", row.get("category") or "general", bool(row.get("held")),
               bool(row.get("third_party")))
        facts = self._facts.get(key)
        if facts is None:
            facts = self._facts[key] = self.policy.facts(*key[:3], held=key[3], third_party=key[4])
        who = (household_id, row["child_id"])
        relation = self._relations.get(who)
        if relation is None:
            relation = self._relations[who] = self.relation(*who)
        consent = self._consent(relation, household_id, row, facts.restricted)
        return self.policy.decide(Reader(relation, consent, self._reason), facts)

    # -- shaping -----------------------------------------------------------------------------------
    def present(self, household_id: str, row: dict[str, Any], keep: Collection[str] = ()) -> dict[str, Any] | None:
        """The row as this reader may see it: whole, redacted with the reason, or None (hidden)."""
        decision = self.decide(household_id, row)
        return shape(self.policy, decision, row, keep)

    def entry_view(self, household_id: str, kind: str | None = None) -> Any:
        """A :data:`hub.stream.readmodel.View` for one household's timeline rows."""
        def view(row: dict[str, Any]) -> dict[str, Any] | None:
            out = self.present(household_id, row)
            return None if out is None or (kind is not None and out["record_type"] != kind) else out
        return view

    def records_view(self, household_id: str) -> Any:
        """A :data:`hub.stream.readmodel.RecordsView`: the child's records this reader may see, minimised
        where details are withheld (a held item adds nothing)."""
        def view(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for e in entries:
                d = self.decide(household_id, e)
                if d.visibility is Visibility.SHOWN:
                    out.append(e)
                elif d.visibility is Visibility.REDACTED and not e.get("held"):
                    out.append({**e, "record": minimal(e["record"])})
            return out
        return view

    def visible_children(self, household_id: str) -> list[str]:
        """The household's children whose record this reader may see at all."""
        hidden = (Relation.SIBLING, Relation.NONE, Relation.AGENCY)
        return [c for c in self.households.get(household_id, Household(household_id)).children
                if self.relation(household_id, c) not in hidden]


def shape(policy: ReadPolicy, decision: ReadDecision, row: dict[str, Any],
          keep: Collection[str] = ()) -> dict[str, Any] | None:
    if decision.visibility is Visibility.HIDDEN:
        return None
    if decision.visibility is Visibility.SHOWN:
        return {k: v for k, v in row.items() if k not in _FACTS_ONLY} | {"visibility": "shown"}
    out = {k: row[k] for k in (*policy.redacted_fields, *keep) if k in row}
    out["summary"] = WITHHELD
    if row.get("held"):
        out["record_type"] = HELD_KIND
        out["summary"] = f"An item is held by {row.get('service_name') or 'its service'}"
    return out | {"visibility": "redacted", "reason_code": decision.rule_id, "reason": decision.reason}


def minimal(record: dict[str, Any]) -> dict[str, Any]:
    """A record cut down to what says it exists (service, dates, which appointment): no clinical content."""
    out = {k: record[k] for k in _STRUCTURE if k in record}
    meta = record.get("meta") or {}
    out["meta"] = {k: meta[k] for k in _META if k in meta}
    return out


def narrowing(view: ReadView, household_id: str) -> list[str] | None:
    """The children whose entries a timeline query need read at all for this reader (None: every child):
    those of whom the policy hides everything (a young person's siblings) are left out of the query."""
    hh = view.households.get(household_id, Household(household_id))
    seen = [c for c in hh.children if not view.policy.always_hidden(view.relation(household_id, c))]
    return None if len(seen) == len(hh.children) else seen


def copies_for(view: ReadView, household_id: str, copies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Family copies as the read policy lets this reader see them: a parent the parents' copies, a young
    person their own, each only where the entry it copies may be seen; redacted copies lose their content."""
    p = view.principal
    out = []
    for c in copies:
        if p is not None and p.role == "parent" and c["recipient"] != "family":
            continue
        if p is not None and p.role == "young_person" and (c["recipient"] != "young_person"
                                                            or c["child_id"] != p.member):
            continue
        info = (c.get("content") or {}).get("information") or {}
        producer = info.get("producer") or {}
        row = {"event_id": info.get("event_id", ""), "child_id": c["child_id"],
               "record_type": info.get("record_type", ""), "category": info.get("category", "general"),
               "sector": producer.get("sector", ""), "agency_id": producer.get("agency_id"),
               "service_name": producer.get("service_name"), "occurred_at": info.get("issued_at") or c["created_at"],
               "held": False, "third_party": bool(info.get("third_party"))}
        d = view.decide(household_id, row)
        if d.visibility is Visibility.SHOWN:
            out.append(c)
        elif d.visibility is Visibility.REDACTED:
            out.append({**c, "content": {**c["content"], "information": shape(view.policy, d, row)}})
    return out


def readiness_for(view: ReadView, store: Store, household_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """A readiness answer with the appointments, reports and expected reports this reader may see."""
    ids = {a["event_id"] for c in result["children"] for a in c["appointments"]}
    ids |= {i["event_id"] for c in result["children"] for a in c["appointments"] for i in a["reports"]}
    ids |= {m["trigger_event_id"] for c in result["children"] for m in c["expected_reports"]}
    rows = entries_by_id(store, household_id, ids)

    def seen(event_id: str) -> ReadDecision | None:
        row = rows.get(event_id)
        d = view.decide(household_id, row) if row is not None else None
        return d if d is not None and d.visible else None

    def report(item: dict[str, Any]) -> dict[str, Any] | None:
        d = seen(item["event_id"])
        if d is None or d.visibility is Visibility.SHOWN:
            return item if d is not None else None
        held = rows[item["event_id"]]["held"]
        return {**item, "record_type": HELD_KIND if held else item["record_type"],
                "title": shape(view.policy, d, rows[item["event_id"]])["summary"],  # type: ignore[index]
                "visibility": d.visibility.value, "reason_code": d.rule_id, "reason": d.reason}

    children = []
    for c in result["children"]:
        appts = [{**a, "reports": [r for r in map(report, a["reports"]) if r is not None],
                  "expected": [m for m in a["expected"] if seen(m["trigger_event_id"])]}
                 for a in c["appointments"] if seen(a["event_id"])]
        children.append({**c, "appointments": appts,
                         "expected_reports": [m for m in c["expected_reports"] if seen(m["trigger_event_id"])]})
    return {**result, "children": children}


def shares_for(view: ReadView, store: Store, household_id: str, shares: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Share states (``delivery.recipient_states``) of the information this reader may see at all."""
    rows = entries_by_id(store, household_id, {s["information_id"] for s in shares})
    keep = {eid for eid, row in rows.items() if view.decide(household_id, row).visible}
    return [s for s in shares if s["information_id"] in keep]


def visible_items(view: ReadView, store: Store, household_id: str,
                  items: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of (child, information id) pairs, those about a child and an entry this reader may see."""
    children = set(view.visible_children(household_id))
    rows = entries_by_id(store, household_id, {info for _, info in items if info})
    out = set()
    for child, info in items:
        if child not in children:
            continue
        row = rows.get(info)
        if row is not None and view.decide(household_id, row).visibility is Visibility.HIDDEN:
            continue
        out.add((child, info))
    return out
