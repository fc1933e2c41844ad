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
from typing import Any

import sqlalchemy as sa

from consent import Category, Child, DirectiveSet, Information, Purpose, Recipient, RecipientKind, Sector
from consent.evaluation import Evaluation
from consent.reading import ConsentAnswer, ReadDecision, Reader, ReadPolicy, Relation, Visibility, load_read_policy
from hub.core import records
from hub.db.schema import consent_directives, household_members, identity_links, share_decisions
from hub.db.store import Store, utcnow
from hub.governance.auth import Principal
from hub.sharing.child_state import directive_set
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


@dataclass
class Household:
    """What the read policy needs to know about one household: its children and their directives."""

    household_id: str
    children: dict[str, Child] = field(default_factory=dict)
    responsible: dict[str, bool] = field(default_factory=dict)  # adult member id -> parental responsibility
    sets: dict[str, DirectiveSet] = field(default_factory=dict)


def load_households(store: Store, household_ids: Iterable[str]) -> dict[str, Household]:
    """The children (birth dates, competence), adults and compiled directives of these households."""
    ids = sorted(set(household_ids))
    out = {h: Household(h) for h in ids}
    if not ids:
        return out
    with store.engine.connect() as conn:
        for r in conn.execute(sa.select(M.member_id, M.household_id, M.kind, M.parental_responsibility,
                                        M.date_of_birth, M.competent_from).where(M.household_id.in_(ids))):
            if r.kind == "child":
                out[r.household_id].children[r.member_id] = child_for_engine(r.member_id, r.date_of_birth,
                                                                             r.competent_from)
            else:
                out[r.household_id].responsible[r.member_id] = bool(r.parental_responsibility)
        for hh, child in conn.execute(sa.select(L.household_id, L.child_id).where(
                L.household_id.in_(ids), L.active.is_(True)).distinct()):
            out[hh].children.setdefault(child, child_for_engine(child))
        by_child = {c: h for h in out.values() for c in h.children}
        rows: dict[str, list[Any]] = {}
        if by_child:
            for d in conn.execute(sa.select(CD.child_id, CD.directive_id, CD.fhir_json, CD.status, CD.withdrawn_at)
                                  .where(CD.child_id.in_(sorted(by_child)), CD.status.in_(("active", "withdrawn")),
                                         CD.fhir_json.is_not(None))):
                rows.setdefault(d.child_id, []).append(d)
    for child_id, hh in by_child.items():
        hh.sets[child_id] = directive_set(hh.children[child_id], rows.get(child_id, []))[0]
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

    @classmethod
    def load(cls, store: Store, principal: Principal | None, household_ids: Iterable[str]) -> ReadView:
        return cls(principal, load_households(store, household_ids))

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
        facts = self.policy.facts(row["record_type"], row.get("sector") or "", row.get("category") or "general",
                                  held=bool(row.get("held")))
        relation = self.relation(household_id, row["child_id"])
        consent = self._consent(relation, household_id, row, facts.restricted)
        p = self.principal
        reason = bool(p and p.role == "ig_officer" and len((p.reason or "").strip()) >= 10)
        return self.policy.decide(Reader(relation, consent, reason), facts)

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
        return {k: v for k, v in row.items() if k != "held"} | {"visibility": "shown"}
    out = {k: row[k] for k in (*policy.redacted_fields, *keep) if k in row}
    out["summary"] = WITHHELD
    if row.get("held"):
        out["record_type"] = HELD_KIND
        out["summary"] = f"An item is held by {row.get('service_name') or 'its service'}"
    return out | {"visibility": "redacted", "reason_code": decision.rule_id, "reason": decision.reason}


def minimal(record: dict[str, Any]) -> dict[str, Any]:
    """A record cut down to what says it exists (service, dates, which appointment): no clinical content."""
    out = {k: record[k] for k in _STRUCTURE if k in record}
    out["meta"] = {k: v for k, v in record.get("meta", {}).items() if k in _META}
    return out


def narrowing(view: ReadView, household_id: str) -> tuple[list[str] | None, list[str]]:
    """What a timeline query may leave out for this reader without reading it, as the policy says:
    (only these children or None for all, categories always hidden)."""
    hh = view.households.get(household_id, Household(household_id))
    relations = {c: view.relation(household_id, c) for c in hh.children}
    only = None
    if view.principal is not None and view.principal.role in ("parent", "young_person"):
        only = [c for c, r in relations.items() if not view.policy.always_hidden(r)]
    excluded = view.policy.family_excluded_categories
    without = sorted(excluded) if relations and all(
        view.policy.always_hidden(r, family_excluded=True) for r in relations.values()) else []
    return only, without


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
               "held": False}
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
                "why": d.reason, "reason_code": d.rule_id}

    children = []
    for c in result["children"]:
        appts = [{**a, "reports": [r for r in map(report, a["reports"]) if r is not None],
                  "expected": [m for m in a["expected"] if seen(m["trigger_event_id"])]}
                 for a in c["appointments"] if seen(a["event_id"])]
        children.append({**c, "appointments": appts,
                         "expected_reports": [m for m in c["expected_reports"] if seen(m["trigger_event_id"])]})
    return {**result, "children": children}


def transparency_for(view: ReadView, store: Store, household_id: str, entries: list[Any]) -> list[Any]:
    """Transparency lines (who received or viewed what) about children and entries this reader may see:
    a share's line names its decision, whose information must be one the reader may see."""
    children = set(view.visible_children(household_id))
    refs = sorted({e.item for e in entries if e.item})
    information: dict[str, str] = {}
    if refs:
        with store.engine.connect() as conn:
            information = {r.decision_id: r.information_id for r in conn.execute(
                sa.select(SD.decision_id, SD.information_id).where(SD.decision_id.in_(refs)))}
    rows = entries_by_id(store, household_id, set(information.values()))
    out = []
    for e in entries:
        if e.child is not None and e.child not in children:
            continue
        row = rows.get(information.get(e.item or "", ""))
        if row is not None and view.decide(household_id, row).visibility is Visibility.HIDDEN:
            continue
        out.append(e)
    return out
