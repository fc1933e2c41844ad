"""A local authority's children in need census return for one collection year, built from the stream.

The social-care events a local authority's system sends under its agency id (hub/governance/cin.py has
the DfE layout they are written in) are already projected per child; this module gathers them for the
children linked to a family and writes one ``CINdetails`` episode of need per referral to one of the
authority's social-care services:

* a ``ReferralMade`` to a social-care service opens an episode (``CINreferralDate``); its ``ReferralSource``
  is the code the mapping wrote in the referral's pathway ("CIN referral source 3A: ..."), else ``10``
  (unknown). A referral while an episode is open belongs to that episode.
* ``SocialCareOutcome`` records add to the open episode: ``child_in_need`` its ``PrimaryNeedCode`` (``N0``,
  not stated, until one is sent), ``child_protection_plan_started`` / ``_ended`` a ``ChildProtectionPlans``
  group (categories of abuse as sent; ``NumberOfPreviousCPP`` counted from the child's earlier plans),
  ``referral_declined`` closes it with ``ReferralNFA`` true and ``RC8`` when nothing else happened, and
  ``case_closed`` closes it with the reason sent (``RC7`` when none). Any other outcome (an assessment, an
  allocation) or an ``AssessmentCompleted`` or ``KeyProfessionalChanged`` from a social-care service means
  the referral was acted on (``ReferralNFA`` false). An outcome with no open episode
  opens one on its own date.
* A ``PlanPublished`` of kind ``child_in_need_plan`` adds ``CINPlanDates``.

An episode is in the return when it was open at any time in the collection period (1 April to 31 March
ending in the collection year). The hub holds no LA child ids, UPNs, gender or ethnicity: each ``Child`` has
the child's birth date when enrolment records it and a comment with the hub's child id.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from typing import Any

import sqlalchemy as sa
from lxml import etree

from hub.db.schema import identity_links, timeline_entries
from hub.db.sealed import sealer
from hub.db.store import Store
from hub.governance.cin import COLLECTION
from hub.governance.dfe_la import england_lea
from hub.governance.sen2_return import birth_dates

T = timeline_entries.c
L = identity_links.c
CIN_TYPES = ("ReferralMade", "SocialCareOutcome", "PlanPublished", "AssessmentCompleted", "KeyProfessionalChanged")
_SOURCE = re.compile(r"CIN referral source (\w+):")


def period(year: int) -> tuple[date, date]:
    """The collection period of a CIN census year: 1 April of the year before to 31 March (the reference date)."""
    return date(year - 1, 4, 1), date(year, 3, 31)


@dataclass
class _Plan:
    start: date
    initial: str
    latest: str
    end: date | None = None
    previous: int = 0


@dataclass
class _Episode:
    referral: date
    source: str = "10"
    need: str = "N0"
    closure: date | None = None
    reason: str | None = None
    acted_on: bool = False
    nfa: bool = False
    plans: list[_Plan] = field(default_factory=list)
    cin_plans: list[date] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    child_id: str
    record_type: str
    occurred_at: datetime
    record: dict[str, Any]


def _rows(store: Store, la_code: str) -> list[_Row]:
    """The council's entries about linked children, their records opened (an erased subject's are not counted)."""
    q = (sa.select(L.child_id, T.event_id, T.record_type, T.occurred_at, T.record)
         .select_from(identity_links.join(timeline_entries, T.subject == L.subject))
         .where(L.active.is_(True), T.status == "active", T.agency_id == la_code, T.record_type.in_(CIN_TYPES))
         .order_by(L.child_id, T.occurred_at, T.event_id))
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = [_Row(r.child_id, r.record_type, r.occurred_at, seal.json(T.record, r.event_id, r.record))
                for r in conn.execute(q)]
    return [r for r in rows if r.record is not None]


def _day(ts: Any) -> date:
    return ts.date() if isinstance(ts, datetime) else date.fromisoformat(str(ts)[:10])


def _apply(episodes: list[_Episode], record_type: str, record: dict[str, Any], day: date, plans_before: int) -> int:
    """Add one event to a child's episodes; the child's count of plans so far, after it."""
    service = record.get("service") or {}
    if service.get("sector") != "social_care":
        return plans_before
    if record_type == "PlanPublished" and record.get("plan_kind") != "child_in_need_plan":
        return plans_before
    open_ = episodes[-1] if episodes and episodes[-1].closure is None else None
    if open_ is None:
        found = _SOURCE.search(record.get("pathway") or "") if record_type == "ReferralMade" else None
        open_ = _Episode(day, found.group(1) if found else "10")
        episodes.append(open_)
        if record_type == "ReferralMade":
            return plans_before
    if record_type == "PlanPublished":
        open_.cin_plans.append(day)
        open_.acted_on = True
        return plans_before
    if record_type != "SocialCareOutcome":  # an assessment or an allocated social worker: acted on
        open_.acted_on = True
        return plans_before
    kind, code = record.get("outcome_kind"), record.get("cin_code")
    if kind == "referral_declined":
        open_.closure, open_.reason, open_.nfa = day, "RC8", not open_.acted_on
    elif kind == "case_closed":
        open_.closure, open_.reason = day, code if code and code.startswith("RC") else "RC7"
    elif kind == "child_in_need":
        open_.need, open_.acted_on = code or open_.need, True
    elif kind == "child_protection_plan_started":
        category = code or "MUL"
        open_.plans.append(_Plan(day, category, category, previous=plans_before))
        open_.acted_on = True
        return plans_before + 1
    elif kind == "child_protection_plan_ended":
        for plan in reversed(open_.plans):
            if plan.end is None:
                plan.end = day
                break
    else:
        open_.acted_on = True
    return plans_before


def episodes(rows: list[_Row], year: int) -> dict[str, list[_Episode]]:
    """Child id → its episodes of need open at any time in the collection period of ``year``."""
    start, end = period(year)
    by_child: dict[str, list[_Episode]] = defaultdict(list)
    plans: dict[str, int] = defaultdict(int)
    for r in rows:
        day = _day(r.occurred_at)
        if day > end:
            continue
        plans[r.child_id] = _apply(by_child[r.child_id], r.record_type, r.record, day, plans[r.child_id])
    return {child: kept for child, eps in by_child.items()
            if (kept := [e for e in eps if e.closure is None or e.closure >= start])}


def _sub(parent: etree._Element, tag: str, value: Any) -> None:
    if value not in (None, ""):
        etree.SubElement(parent, tag).text = value.isoformat() if isinstance(value, date) else str(value)


def _episode_element(parent: etree._Element, e: _Episode) -> None:
    el = etree.SubElement(parent, "CINdetails")
    _sub(el, "CINreferralDate", e.referral)
    _sub(el, "ReferralSource", e.source)
    _sub(el, "PrimaryNeedCode", e.need)
    _sub(el, "CINclosureDate", e.closure)
    _sub(el, "ReasonForClosure", e.reason)
    for started in e.cin_plans:
        _sub(etree.SubElement(el, "CINPlanDates"), "CINPlanStartDate", started)
    _sub(el, "ReferralNFA", "true" if e.nfa else "false")  # after the episode's Section47 groups, as the schema orders
    for plan in e.plans:
        cpp = etree.SubElement(el, "ChildProtectionPlans")
        _sub(cpp, "CPPstartDate", plan.start)
        _sub(cpp, "CPPendDate", plan.end)
        _sub(cpp, "InitialCategoryOfAbuse", plan.initial)
        _sub(cpp, "LatestCategoryOfAbuse", plan.latest)
        _sub(cpp, "NumberOfPreviousCPP", plan.previous)


def _release() -> str:
    try:
        return metadata.version("family-hub")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_return(store: Store, la_code: str, year: int, *, lea: str | None, now: datetime | None = None,
                 serial: int = 1) -> tuple[bytes, int]:
    """The CIN census return for collection ``year`` of the authority whose events carry agency id
    ``la_code`` and whose DfE local-authority number is ``lea`` (refused unless an English authority's:
    the CIN census is an England return), as XML bytes, and how many children it has."""
    lea = england_lea(lea, la_code, "The CIN census")
    by_child = episodes(_rows(store, la_code), year)
    births = birth_dates(store, list(by_child))
    root = etree.Element("Message")
    header = etree.SubElement(root, "Header")
    details = etree.SubElement(header, "CollectionDetails")
    _sub(details, "Collection", COLLECTION)
    _sub(details, "Year", year)
    _sub(details, "ReferenceDate", period(year)[1])
    source = etree.SubElement(header, "Source")
    for tag, value in (("SourceLevel", "L"), ("LEA", lea), ("SoftwareCode", "family-hub"),
                       ("Release", _release()), ("SerialNo", f"{serial:03d}"),
                       ("DateTime", (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S"))):
        _sub(source, tag, value)
    children = etree.SubElement(root, "Children")
    for child in sorted(by_child):
        el = etree.SubElement(children, "Child")
        el.append(etree.Comment(f" hub child {child}: the authority completes LAchildID, UPN, gender, ethnicity "))
        identifiers = etree.SubElement(el, "ChildIdentifiers")
        _sub(identifiers, "PersonBirthDate", births.get(child))
        etree.SubElement(el, "ChildCharacteristics")
        for e in by_child[child]:
            _episode_element(el, e)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True), len(by_child)


