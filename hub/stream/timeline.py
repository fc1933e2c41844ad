"""Pure timeline logic: what a decoded hub record means as a timeline entry. No Kafka, no database.

An entry is keyed by the hub event id (one per source record); a newer source version replaces the
older one (rescheduled, amended, cancelled), an older or equal version changes nothing, and
``entered_in_error`` hides the entry. Identity links are not entries: they say which child and
household a subject belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

_SECTOR_AGENCY = {"health": "Health", "social_care": "Local authority", "education": "Education",
                  "family": "Family", "hub": "Hub"}


@dataclass(frozen=True)
class Entry:
    event_id: str
    subject: str
    record_type: str
    ce_type: str
    sector: str
    agency_id: str | None
    service_name: str | None
    category: str
    status: str
    source_system: str
    source_version: int
    occurred_at: datetime
    received_at: datetime
    summary: str
    record: str  # JSON of the record


@dataclass(frozen=True)
class Link:
    subject: str
    child_id: str
    household_id: str
    identifier_system: str
    active: bool
    event_id: str
    source_version: int
    occurred_at: datetime


def _human(value: str) -> str:
    return value.replace("_", " ")


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%d %b %Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d %b %Y")
    return str(value)


def summarise(record_type: str, r: dict[str, Any]) -> str:
    """One readable line, built only from service and event fields (never identifiers)."""
    svc = (r.get("service") or r.get("school") or {}).get("service_name", "")
    match record_type:
        case "ReferralMade":
            return f"Referral to {svc}" + (f" ({r['pathway']})" if r.get("pathway") else "")
        case "ReferralOutcome":
            return f"Referral {_human(r['outcome'])} by {svc}" + (f": {r['reason']}" if r.get("reason") else "")
        case "WaitingListEntered":
            wait = r.get("estimated_wait_days")
            return f"On {svc} waiting list" + (f", about {wait // 7} weeks" if wait else "")
        case "WaitEstimateUpdated":
            return f"{svc} wait now about {r['estimated_wait_days'] // 7} weeks"
        case "AppointmentBooked":
            contact = _human(r.get("contact_type", "other")).capitalize()
            return f"{contact} appointment with {svc} on {_when(r['start'])}"
        case "AppointmentRescheduled":
            return f"{svc} appointment moved to {_when(r['new_start'])} by {_human(r['rescheduled_by'])}"
        case "AppointmentCancelled":
            return f"{svc} appointment cancelled by {_human(r['cancelled_by'])}"
        case "AttendanceRecorded":
            return f"{svc}: {_human(r['outcome'])}"
        case "AssessmentCompleted":
            return f"{r['assessment_kind']} completed by {svc}"
        case "ReportIssued" | "ReportAmended":
            verb = "issued" if record_type == "ReportIssued" else "amended"
            return f"{_human(r['report_kind']).capitalize()} report {verb} by {svc}: {r['title']}"
        case "ResultAvailable":
            return f"{r['test_kind']} result available from {svc}"
        case "DiagnosisRecorded":
            return f"Diagnosis recorded by {svc}: {r['display']}"
        case "HospitalAdmitted":
            return f"{'Emergency admission' if r.get('emergency') else 'Admitted'} to {svc}"
        case "HospitalDischarged":
            return f"Discharged from {svc}"
        case "ServiceDischarged":
            return f"Discharged from {svc}" + (" (open access)" if r.get("open_access") else "")
        case "PlanPublished" | "PlanReviewed":
            verb = "published" if record_type == "PlanPublished" else "reviewed"
            return f"{_human(r['plan_kind']).capitalize()} {verb} by {svc}"
        case "TransitionRecorded":
            to = f" to {r['to_setting']}" if r.get("to_setting") else ""
            return f"Transition: {_human(r['transition_kind'])}{to}"
        case "KeyProfessionalChanged":
            return f"New {r['role']} at {svc}: {r['current'].get('display_name') or r['current']['id']}"
        case "SocialCareOutcome":
            return f"Social care: {_human(r['outcome_kind'])} ({svc})"
        case "EhcAssessmentRequested":
            return f"EHC needs assessment requested from {svc}"
        case "EhcAssessmentDecided":
            return f"EHC needs assessment decision: {_human(r['decision'])}"
        case "EhcPlanIssued":
            weeks = r.get("weeks_from_request")
            return f"EHC plan {r['plan_status']}" + (f" ({weeks} weeks from request)" if weeks is not None else "")
        case "SchoolPlacement":
            return f"School placement at {svc}"
        case "SchoolAttendance":
            pct = 100 * r["sessions_attended"] // max(1, r["sessions_possible"])
            return f"Attendance at {svc}: {pct}% of sessions"
        case "SchoolExclusion":
            return f"{_human(r['exclusion_kind']).capitalize()} from {svc}"
        case "ConsentGranted":
            return "Consent directive given"
        case "ConsentWithdrawn":
            return "Consent directive withdrawn"
    return _human(record_type)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


def to_json(record: dict[str, Any]) -> str:
    return json.dumps(record, default=_json_default, separators=(",", ":"))


def entry_from(record_type: str, ce_type: str, record: dict[str, Any]) -> Entry:
    meta = record["meta"]
    service = record.get("service") or record.get("school") or {}
    return Entry(
        event_id=meta["event_id"], subject=meta["subject"], record_type=record_type, ce_type=ce_type,
        sector=service.get("sector", "hub"), agency_id=service.get("agency_id"),
        service_name=service.get("service_name"), category=meta["category"], status=meta["status"],
        source_system=meta["source_system"], source_version=meta["source_version"],
        occurred_at=meta["occurred_at"], received_at=meta["received_at"],
        summary=summarise(record_type, record), record=to_json(record),
    )


def link_from(record: dict[str, Any]) -> Link:
    meta = record["meta"]
    return Link(subject=meta["subject"], child_id=record["child_id"], household_id=record["household_id"],
                identifier_system=record["identifier_system"],
                active=record["action"] == "link" and meta["status"] == "active",
                event_id=meta["event_id"], source_version=meta["source_version"], occurred_at=meta["occurred_at"])


def agency_label(sector: str) -> str:
    return _SECTOR_AGENCY.get(sector, sector)


def newer(incoming: tuple[int, datetime], current: tuple[int, datetime] | None) -> bool:
    """Whether an incoming (version, time) replaces the stored one: strictly higher version wins."""
    return current is None or incoming[0] > current[0]
