"""What the sharing step shares, and with whom: hub records → consent ``Information`` and ``Recipient``.

Pure functions over decoded records and the team around the child; no storage.

* Shareable records: those whose schema names a kind in ``hub.shareable`` (see
  :mod:`hub.core.records`): ReportIssued / ReportAmended (kind ``report``), AssessmentCompleted
  (``assessment``), ResultAvailable (``result``), PlanPublished / PlanReviewed / EhcPlanIssued
  (``plan``), ReferralOutcome (``referral_outcome``). A share notice describes the information by
  the fields listed in its schema's ``hub.share_fields``.
* Recipients: every service in the team around the child (``hub.team.team_around``) other than the
  producing service itself — same-agency services are decided too (rule R2 permits them for direct
  care) — plus the family: the parents (one recipient per household, with parental responsibility)
  and the young person. The child's age comes from enrolment (``household_members.date_of_birth``,
  and ``competent_from`` where competence before 16 is recorded): from 16 (or competence) the young
  person receives their own copy and their own directives decide; a child with no birth date on
  record is treated as under 16.
* Recipient keys: ``service:<agency id>:<service name>``, ``family:parents:<household>``,
  ``family:young_person:<child>``, and for a named professional of a team service
  ``professional:<agency id>:<service name>:<professional id>``.
* Named professionals: each service target carries one sub-target per named professional the
  records show in that service (``TeamMember.professionals``, with their role where recorded), so a
  directive naming a professional or a role ("never to this named professional") decides for them
  apart from their colleagues. See :mod:`hub.sharing.processor` for how those decisions are kept.
* ``Recipient.service`` is the service code in lower case when the records carry one (``send``,
  ``slt``), else the service name: consent directives name services that way, and the statutory EHC
  rule (R6) matches LA SEN team codes. A coordinator is a team service whose name mentions
  coordination; it is decided for purpose ``care_coordination``. The LA SEN team is decided for
  ``ehc_needs_assessment`` while the child has an EHC needs assessment request on record.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from consent import Category, Child, Information, Purpose, Recipient, RecipientKind, Sector
from hub.core import records
from hub.stream.team import TeamMember, service_of

#: a child enrolled without a birth date is treated as under 16 (see the module docstring)
UNKNOWN_BIRTH_DATE = date(9000, 1, 1)
SHARING_NAMESPACE = uuid.UUID("3d7f6c52-2f0e-4c1e-9a55-6c1d7e0b8a11")
_SECTORS = {"health": Sector.HEALTH, "social_care": Sector.SOCIAL_CARE, "education": Sector.EDUCATION}
_STATUTORY_SERVICES = frozenset({"sen", "send", "sen_team", "send_team"})


def child_for_engine(child_id: str, birth_date: date | None = None, competent_from: date | None = None) -> Child:
    return Child(child_id, birth_date or UNKNOWN_BIRTH_DATE, competent_from)


def stable_id(*parts: object) -> str:
    return str(uuid.uuid5(SHARING_NAMESPACE, "\x1f".join(str(p) for p in parts)))


@dataclass(frozen=True)
class Target:
    """A recipient of the child's information, with the purpose it is decided for."""

    key: str
    recipient: Recipient
    purpose: Purpose
    agency_id: str | None
    service: str | None  # service name (display)
    sector: str | None
    professional_id: str | None = None  # a named professional of the service (their own target)
    professionals: tuple[Target, ...] = ()  # a service's named professionals

    @property
    def is_family(self) -> bool:
        return self.recipient.is_family_side


@dataclass(frozen=True)
class Shareable:
    """A shareable record of one child, as the consent engine sees it, plus what a recipient may be sent."""

    info: Information
    version: int
    record_type: str
    producer_agency_id: str
    producer_service: str
    producer_sector: str
    record: dict[str, Any]
    addressed_to: str | None = None  # a referral: the recipient key of the one service it is addressed to

    @property
    def event_id(self) -> str:
        return self.info.id

    @property
    def child_id(self) -> str:
        """The child in whose record it is."""
        return self.info.in_record_of


def delivery_row_id(information_id: str, version: int, recipient_key: str, kind: str, round_: int,
                    child_id: str) -> str:
    """The stable id of a delivery row: one per child, information version, recipient, kind and round."""
    return stable_id("delivery", child_id, information_id, version, recipient_key, kind, round_)


def decision_row_id(information_id: str, version: int, recipient_key: str, seq: int, child_id: str) -> str:
    """The stable id of a decision row: one per child, information version, recipient and seq."""
    return stable_id("decision", child_id, information_id, version, recipient_key, seq)


def service_key(agency_id: str, service_name: str) -> str:
    return f"service:{agency_id}:{service_name}"


def professional_key(agency_id: str, service_name: str, professional_id: str) -> str:
    return f"professional:{agency_id}:{service_name}:{professional_id}"


def _named(member: TeamMember, kind: RecipientKind, sector: Sector, service_id: str,
           purpose: Purpose) -> tuple[Target, ...]:
    return tuple(
        Target(professional_key(member.agency_id, member.service, pid),
               Recipient(kind, agency_id=member.agency_id, sector=sector, service=service_id,
                         role=member.roles.get(pid), professional_id=pid),
               purpose, member.agency_id, member.service, member.sector, professional_id=pid)
        for pid in sorted(member.professionals))


def service_code(record: dict[str, Any]) -> str | None:
    """The code of a record's service or school as consent directives name it (lower case), if it carries one."""
    svc = record.get("service") or record.get("school") or {}
    return str(svc["service_code"]).lower() if svc.get("service_code") else None


def service_codes(entries: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Each service's code, the latest in event time where its records carry one."""
    codes: dict[tuple[str, str], str] = {}
    for e in entries:
        if (code := service_code(e["record"])) is not None:
            codes[service_of(e["record"])] = code
    return codes


def ehc_open(entries: list[dict[str, Any]]) -> bool:
    """Whether the child has an EHC needs assessment request on record."""
    return any(e["record_type"] == "EhcAssessmentRequested" for e in entries)


def targets_for(team: list[TeamMember], entries: list[dict[str, Any]], household_id: str,
                child_id: str) -> list[Target]:
    """Every recipient the child's information is decided for (team services and the family)."""
    return targets_from(team, service_codes(entries), ehc_open(entries), household_id, child_id)


def targets_from(team: list[TeamMember], codes: dict[tuple[str, str], str], ehc_open: bool, household_id: str,
                 child_id: str) -> list[Target]:
    """:func:`targets_for` from what it reads of the child's entries: the service codes and whether an EHC needs
    assessment is open."""
    out: list[Target] = []
    for m in team:
        sector = _SECTORS.get(m.sector)
        if sector is None or not m.agency_id:
            continue
        service_id = codes.get((m.agency_id, m.service)) or m.service
        coordinator = "coordinat" in m.service.lower()
        kind = RecipientKind.COORDINATOR if coordinator else RecipientKind.AGENCY_PROFESSIONAL
        if coordinator:
            purpose = Purpose.CARE_COORDINATION
        elif ehc_open and service_id in _STATUTORY_SERVICES:
            purpose = Purpose.EHC_NEEDS_ASSESSMENT
        else:
            purpose = Purpose.DIRECT_CARE
        out.append(Target(service_key(m.agency_id, m.service),
                          Recipient(kind, agency_id=m.agency_id, sector=sector, service=service_id),
                          purpose, m.agency_id, m.service, m.sector,
                          professionals=_named(m, kind, sector, service_id, purpose)))
    out.append(Target(f"family:parents:{household_id}",
                      Recipient(RecipientKind.FAMILY, person_id=f"parents-{household_id}"),
                      Purpose.FAMILY_COPY, None, "Parents / carers", "family"))
    out.append(Target(f"family:young_person:{child_id}",
                      Recipient(RecipientKind.YOUNG_PERSON, person_id=child_id),
                      Purpose.FAMILY_COPY, None, "Young person", "family"))
    return out


def shareable_from(entry: dict[str, Any], child_id: str, *, released: bool = False) -> Shareable | None:
    """The shareable view of one of the child's entries (``readmodel.child_records`` shape), or None.

    ``released``: the entry's disclosure hold was released (``disclosure_releases``)."""
    kind = records.catalogue().shareable.get(entry["record_type"])
    r = entry["record"]
    svc = r.get("service") or {}
    addressed_to = None
    addressed = records.catalogue().types[entry["record_type"]].addressed \
        if entry["record_type"] in records.catalogue() else None
    if kind is None and addressed is not None and r.get(addressed.when):
        # a referral, from the referring service, to the one service it names
        kind, target, svc = addressed.kind, svc, r.get(addressed.producer) or {}
        addressed_to = service_key(target.get("agency_id", ""), target.get("service_name", ""))
    if kind is None:
        return None
    meta = r["meta"]
    sector = _SECTORS.get(svc.get("sector", ""))
    if sector is None or not svc.get("agency_id"):
        return None
    try:
        category = Category(meta.get("category", "general"))
    except ValueError:
        category = Category.GENERAL
    issued = meta["occurred_at"]
    if not isinstance(issued, datetime):
        issued = datetime.fromisoformat(str(issued))
    info = Information(
        id=meta["event_id"], kind=kind, category=category, agency_id=svc["agency_id"], sector=sector,
        about=child_id, in_record_of=child_id, issued_at=issued,
        disclosure_hold=bool(r.get("disclosure_hold", False)), released=released)
    return Shareable(info, int(meta.get("source_version", 1)), entry["record_type"], svc["agency_id"],
                     svc.get("service_name", ""), svc.get("sector", ""), r, addressed_to)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def information_summary(s: Shareable) -> dict[str, Any]:
    """Least data about the information: metadata and a document reference, no free text or identifiers."""
    r = s.record
    out: dict[str, Any] = {
        "event_id": s.event_id, "version": s.version, "record_type": s.record_type, "kind": s.info.kind,
        "category": s.info.category.value, "issued_at": _iso(s.info.issued_at),
        "producer": {"agency_id": s.producer_agency_id, "service_name": s.producer_service,
                     "sector": s.producer_sector},
    }
    spec = records.get(s.record_type)
    for key in spec.addressed.share_fields if s.addressed_to and spec.addressed else spec.share_fields:
        if r.get(key) is not None:
            out[key] = _iso(r[key])
    if r.get("third_party"):
        out["third_party"] = r["third_party"]  # someone other than the child is mentioned (a relationship only)
    return out
