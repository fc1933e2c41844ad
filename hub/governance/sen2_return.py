"""A local authority's SEN2 return for one collection year, built from the events the hub holds.

The EHC events a local authority sends (``EhcAssessmentRequested``, ``EhcAssessmentDecided``,
``EhcPlanIssued``, under its agency id) are already projected per child; this module gathers them for
the authority's children and writes the return in the DfE's XML layout (:mod:`hub.governance.sen2`):
one ``Person`` per child, one ``Request`` per request received on or before the census date, its
outcome, the assessment's outcome and the 20-week flag, and the named plan with its start, type of
need, setting and, when it ceased, the cease date and reason. A decision is joined to its request by
``request_id`` (the request's source id); a plan naming no known request gets a request of its own
from the plan's ``request_received_date``. Codes the authority sent are written as sent; when it
sent none, the request outcome follows the decision (assess: A, not assess: B), a plan implies
assessment outcome A, and the 20-week flag follows ``weeks_from_request`` (at most 20: Y).

The hub holds no names, UPNs, sex or postcodes: each ``Person`` has the child's birth date when
enrolment records it and a comment with the hub's child id, for the authority's system to complete.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from typing import Any

import sqlalchemy as sa
from lxml import etree

from hub.db.schema import household_members, identity_links, timeline_entries
from hub.db.sealed import sealer
from hub.db.store import Store
from hub.governance.sen2 import COLLECTION

T = timeline_entries.c
L = identity_links.c
EHC_TYPES = ("EhcAssessmentRequested", "EhcAssessmentDecided", "EhcPlanIssued")


def _release() -> str:
    try:
        return metadata.version("family-hub")
    except metadata.PackageNotFoundError:
        return "unknown"


def census_date(year: int) -> date:
    """The SEN2 census date of a collection year: the third Thursday of January."""
    first = date(year, 1, 1)
    return first + timedelta(days=(3 - first.weekday()) % 7 + 14)


@dataclass
class _Request:
    received: date
    source: str | None = None
    decision: dict[str, Any] | None = None
    plans: list[dict[str, Any]] = field(default_factory=list)


def _day(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, int):  # Avro date: days since the epoch
        return date(1970, 1, 1) + timedelta(days=value)
    return date.fromisoformat(str(value)[:10])


def _rows(store: Store, la_code: str) -> list[Any]:
    q = (sa.select(L.child_id, T.event_id, T.record_type, T.occurred_at, T.record)
         .select_from(identity_links.join(timeline_entries, T.subject == L.subject))
         .where(L.active.is_(True), T.status == "active", T.agency_id == la_code, T.record_type.in_(EHC_TYPES))
         .order_by(L.child_id, T.occurred_at, T.event_id))
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = [(r.child_id, r.record_type, seal.json(T.record, r.event_id, r.record)) for r in conn.execute(q)]
    return [r for r in rows if r[2] is not None]  # an erased subject's entries are not counted


def _requests(rows: list[Any], census: date) -> dict[str, list[_Request]]:
    """Child id → its requests (received on or before the census date) with decisions and plans."""
    by_child: dict[str, dict[str, _Request]] = defaultdict(dict)
    later: list[tuple[str, str, dict[str, Any]]] = []
    for child_id, record_type, record in rows:
        if record_type == "EhcAssessmentRequested":
            received = _day(record.get("request_received_date"))
            if received and received <= census:
                by_child[child_id][record["meta"]["source_id"]] = _Request(received, record.get("request_source"))
        else:
            later.append((child_id, record_type, record))
    for child, record_type, record in later:
        requests = by_child[child]
        req = requests.get(record.get("request_id") or "")
        if record_type == "EhcAssessmentDecided":
            if req is not None and (_day(record.get("decision_date")) or census) <= census:
                req.decision = record
            continue
        start = _day(record.get("plan_start_date"))
        if start is None or start > census:
            continue
        if req is None:
            received = _day(record.get("request_received_date")) or start
            req = requests.setdefault(f"plan:{record.get('plan_id')}", _Request(received))
        req.plans.append(record)
    return {c: sorted(rs.values(), key=lambda q: q.received) for c, rs in by_child.items() if rs}


def _sub(parent: etree._Element, tag: str, value: Any) -> None:
    if value not in (None, ""):
        etree.SubElement(parent, tag).text = value.isoformat() if isinstance(value, date) else str(value)


def _request_element(parent: etree._Element, req: _Request) -> None:
    el = etree.SubElement(parent, "Request")
    _sub(el, "ReceivedDate", req.received)
    _sub(el, "RequestSource", req.source)
    d = req.decision
    outcome = (d.get("request_outcome") or {"assess": "A", "not_assess": "B"}.get(d.get("decision", ""))) if d else None
    if outcome is None and req.plans:
        outcome = "A"  # a plan was issued, so the authority decided to assess
    if outcome is not None:
        _sub(el, "RequestOutcomeDate", _day(d.get("decision_date")) if d else req.received)
        _sub(el, "RequestOutcome", outcome)
    if not req.plans:
        return
    plan = {k: v for p in req.plans for k, v in p.items() if v is not None}  # later steps add to earlier
    start = _day(plan.get("plan_start_date"))
    assessment = etree.SubElement(el, "Assessment")
    _sub(assessment, "AssessmentOutcome", plan.get("assessment_outcome") or "A")
    _sub(assessment, "AssessmentOutcomeDate", start)
    within = plan.get("issued_within_20_weeks")
    if within is None and plan.get("weeks_from_request") is not None:
        within = int(plan["weeks_from_request"]) <= 20
    _sub(assessment, "Week20", None if within is None else ("Y" if within else "N"))
    named = etree.SubElement(assessment, "NamedPlan")
    _sub(named, "StartDate", start)
    _sub(named, "SENtype", plan.get("sen_type"))
    ceased = [p for p in req.plans if p.get("plan_status") == "ceased"]
    if ceased:
        _sub(named, "CeaseDate", _day(ceased[-1]["meta"]["occurred_at"]))
        _sub(named, "CeaseReason", ceased[-1].get("cease_reason") or "9")
    if plan.get("sen_setting"):
        _sub(etree.SubElement(named, "Placement"), "SENsetting", plan["sen_setting"])


def birth_dates(store: Store, child_ids: list[str]) -> dict[str, date]:
    """The children's dates of birth, opened from their sealed column (an erased child has none)."""
    m = household_members.c
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.member_id, m.date_of_birth).where(m.member_id.in_(child_ids)))
        born = {r.member_id: seal.date(m.date_of_birth, r.member_id, r.date_of_birth) for r in rows}
    return {k: v for k, v in born.items() if v is not None}


def build_return(store: Store, la_code: str, year: int, *, now: datetime | None = None,
                 serial: int = 1) -> tuple[bytes, int]:
    """The SEN2 return of ``la_code`` for collection ``year`` as XML bytes, and how many persons it has."""
    census = census_date(year)
    requests = _requests(_rows(store, la_code), census)
    births = birth_dates(store, list(requests))
    root = etree.Element("Message")
    header = etree.SubElement(root, "Header")
    details = etree.SubElement(header, "CollectionDetails")
    _sub(details, "Collection", COLLECTION)
    _sub(details, "Year", year)
    _sub(details, "ReferenceDate", census)
    source = etree.SubElement(header, "Source")
    for tag, value in (("SourceLevel", "L"), ("LEA", la_code), ("SoftwareCode", "family-hub"),
                       ("Release", _release()), ("SerialNo", serial),
                       ("DateTime", (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S"))):
        _sub(source, tag, value)
    persons = etree.SubElement(root, "Persons")
    for child in sorted(requests):
        person = etree.SubElement(persons, "Person")
        person.append(etree.Comment(f" hub child {child}: the authority completes names, UPN, sex, ethnicity "))
        _sub(person, "PersonBirthDate", births.get(child))
        reqs = etree.SubElement(person, "Requests")
        for req in requests[child]:
            _request_element(reqs, req)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True), len(requests)
