"""A local authority's SEN2 return for one collection year, built from the events the hub holds.

The EHC events a local authority sends (``EhcAssessmentRequested``, ``EhcAssessmentDecided``,
``EhcPlanIssued``, under its agency id) are already projected per child; this module gathers them for
the authority's children and writes the return in the DfE's XML layout (:mod:`hub.governance.sen2`):
one ``Person`` per child, one ``Requests`` element per request received on or before the census date
with its outcome; for a request that led to a plan, its ``Assessment`` (outcome, the DfE's Week20 flag
when the authority sent it) and ``NamedPlan`` (start, setting, and when it ceased the cease date and
reason), and, while the plan is maintained on the census date, ``ActivePlans`` with its setting and
type of need. A decision is joined to its request by ``request_id`` (the request's source id); a plan
naming no known request gets a request of its own from the plan's ``request_received_date``. Codes
the authority sent are written as sent (codes from mappings before ``mis-generic@3`` are read as the
DfE's, see :func:`_as_dfe`); when it sent none, the request outcome follows the decision (assess: Y,
not assess: N; no decision yet: A), and a plan implies assessment outcome Y. ``Week20`` says whether
the 20-week time limit's exceptions apply: as the authority sent it, else 1 when the authority recorded
a ``StatutoryClockException`` stopping the ``ehc_final_plan`` clock between the request and the plan
(reg. 13(3)), else nothing: the hub's own count of weeks cannot tell that no exception applied.

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
from hub.governance.dfe_la import england_lea
from hub.governance.sen2 import COLLECTION

T = timeline_entries.c
L = identity_links.c
EHC_TYPES = ("EhcAssessmentRequested", "EhcAssessmentDecided", "EhcPlanIssued")
EXCEPTION = "StatutoryClockException"
FINAL_PLAN_CLOCK = "ehc_final_plan"  # hub/stream/rulesets/statutory-clocks.yaml: the plan within 20 weeks


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
    time_limit_excepted: bool = False  # an exception to the 20-week limit recorded between request and plan


def _day(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, int):  # Avro date: days since the epoch
        return date(1970, 1, 1) + timedelta(days=value)
    return date.fromisoformat(str(value)[:10])


def _rows(store: Store, la_code: str) -> list[Any]:
    q = (sa.select(L.child_id, T.event_id, T.record_type, T.occurred_at, T.record)
         .select_from(identity_links.join(timeline_entries, T.subject == L.subject))
         .where(L.active.is_(True), T.status == "active", T.agency_id == la_code,
                T.record_type.in_((*EHC_TYPES, EXCEPTION)))
         .order_by(L.child_id, T.occurred_at, T.event_id))
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = [(r.child_id, r.record_type, seal.json(T.record, r.event_id, r.record)) for r in conn.execute(q)]
    return [r for r in rows if r[2] is not None]  # an erased subject's entries are not counted


def _requests(rows: list[Any], census: date) -> dict[str, list[_Request]]:
    """Child id → its requests (received on or before the census date) with decisions and plans."""
    by_child: dict[str, dict[str, _Request]] = defaultdict(dict)
    later: list[tuple[str, str, dict[str, Any]]] = []
    excepted: dict[str, list[date]] = defaultdict(list)
    for child_id, record_type, record in rows:
        if record_type == EXCEPTION:
            if record.get("clock") == FINAL_PLAN_CLOCK and (on := _day(record["meta"].get("occurred_at"))):
                excepted[child_id].append(on)
        elif record_type == "EhcAssessmentRequested":
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
    for child, days in excepted.items():
        for req in by_child[child].values():
            issued = min((_day(p["meta"].get("occurred_at")) or census for p in req.plans), default=None)
            req.time_limit_excepted = issued is not None and any(req.received <= d <= issued for d in days)
    return {c: sorted(rs.values(), key=lambda q: q.received) for c, rs in by_child.items() if rs}


def _sub(parent: etree._Element, tag: str, value: Any) -> None:
    if value not in (None, ""):
        etree.SubElement(parent, tag).text = value.isoformat() if isinstance(value, date) else str(value)


def _as_dfe(record: dict[str, Any], field_name: str) -> Any:
    """A SEN2 code as the DfE defines it. Mappings before ``mis-generic@3`` wrote their own request and
    assessment outcome codes (A: assess or issue, B: not) and ``EOTAS`` for OLA; they are read as DfE codes here."""
    value = record.get(field_name)
    mapping = str((record.get("meta") or {}).get("mapping") or "")
    if value is None or mapping not in _BEFORE_DFE_CODES:
        return value
    if field_name in ("request_outcome", "assessment_outcome"):
        return {"A": "Y", "B": "N"}.get(value, value)
    return "OLA" if field_name == "sen_setting" and value == "EOTAS" else value


_BEFORE_DFE_CODES = frozenset({"mis-generic@1", "mis-generic@2"})


def _request_outcome(req: _Request) -> tuple[str, date | None]:
    """RequestOutcome and its date: as the authority sent it, else from its decision (assess: Y, not: N),
    Y when a plan was issued, and A (decision yet to be made) when the hub holds no decision."""
    d = req.decision
    if d is not None:
        sent = _as_dfe(d, "request_outcome") or {"assess": "Y", "not_assess": "N"}.get(d.get("decision", ""))
        if sent:
            return sent, _day(d.get("decision_date"))
    return ("Y", None) if req.plans else ("A", None)


def _placement(parent: etree._Element, tag: str, setting: str | None) -> None:
    """A PlanDetail or PlacementDetail: the setting the authority sent, first in rank; the indicators,
    entry date and URN are the authority's to complete."""
    if setting:
        el = etree.SubElement(parent, tag)
        _sub(el, "SENSetting", setting)
        _sub(el, "PlacementRank", 1)


def _request_element(parent: etree._Element, req: _Request, census: date) -> None:
    el = etree.SubElement(parent, "Requests")
    _sub(el, "ReceivedDate", req.received)
    _sub(el, "RequestSource", req.source)
    outcome, outcome_date = _request_outcome(req)
    _sub(el, "RequestOutcomeDate", outcome_date)
    _sub(el, "RequestOutcome", outcome)
    if not req.plans:
        return
    plan = {k: v for p in req.plans for k, v in p.items() if v is not None}  # later steps add to earlier
    start = _day(plan.get("plan_start_date"))
    setting = _as_dfe(plan, "sen_setting")
    assessment = etree.SubElement(el, "Assessment")
    _sub(assessment, "AssessmentOutcome", _as_dfe(plan, "assessment_outcome") or "Y")
    _sub(assessment, "AssessmentOutcomeDate", start)
    exceptions = plan.get("week20_exceptions_apply")  # the DfE's Week20: exceptions to the time limit apply
    if exceptions is None and req.time_limit_excepted:
        exceptions = True  # the authority recorded one through the hub (never inferred from the count of weeks)
    _sub(assessment, "Week20", None if exceptions is None else ("1" if exceptions else "0"))
    named = etree.SubElement(assessment, "NamedPlan")
    _sub(named, "StartDate", start)
    _placement(named, "PlanDetail", setting)
    ceased = [p for p in req.plans if p.get("plan_status") == "ceased"]
    cease_date = _day(ceased[-1]["meta"]["occurred_at"]) if ceased else None
    if ceased:
        _sub(named, "CeaseDate", cease_date)
        _sub(named, "CeaseReason", ceased[-1].get("cease_reason") or "9")
    if cease_date is None or cease_date > census:  # the plan is maintained on the census date
        active = etree.SubElement(el, "ActivePlans")
        _placement(active, "PlacementDetail", setting)
        if plan.get("sen_type"):
            need = etree.SubElement(active, "SENneed")
            _sub(need, "SENtype", plan["sen_type"])
            _sub(need, "SENtypeRank", 1)


def birth_dates(store: Store, child_ids: list[str]) -> dict[str, date]:
    """The children's dates of birth, opened from their sealed column (an erased child has none)."""
    m = household_members.c
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.member_id, m.date_of_birth).where(m.member_id.in_(child_ids)))
        born = {r.member_id: seal.date(m.date_of_birth, r.member_id, r.date_of_birth) for r in rows}
    return {k: v for k, v in born.items() if v is not None}


def build_return(store: Store, la_code: str, year: int, *, lea: str | None, now: datetime | None = None,
                 serial: int = 1) -> tuple[bytes, int]:
    """The SEN2 return for collection ``year`` of the authority whose events carry agency id ``la_code``
    and whose DfE local-authority number is ``lea`` (refused unless an English authority's: SEN2 is
    an England return), as XML bytes, and how many persons it has."""
    lea = england_lea(lea, la_code, COLLECTION)
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
    for tag, value in (("SourceLevel", "L"), ("LEA", lea), ("SoftwareCode", "family-hub"),
                       ("Release", _release()), ("SerialNo", f"{serial:03d}"),
                       ("DateTime", (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S"))):
        _sub(source, tag, value)
    persons = etree.SubElement(root, "Persons")
    for child in sorted(requests):
        person = etree.SubElement(persons, "Person")
        person.append(etree.Comment(f" hub child {child}: the authority completes names, UPN, sex, ethnicity "))
        _sub(person, "PersonBirthDate", births.get(child))
        for req in requests[child]:
            _request_element(person, req, census)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True), len(requests)
