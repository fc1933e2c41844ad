"""Pure derivations over a child's timeline: the team around the child and upcoming appointments.

Both take timeline entries in event-time order (each with ``record_type`` and the decoded
``record``) and know nothing of storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.core import records

_CLOSED_OUTCOMES = {"case_closed", "referral_declined"}
#: the fields of a record that name a professional of its service
ROLE_KEYS = ("professional", "author", "current", "social_worker", "referrer")


@dataclass
class TeamMember:
    agency_id: str
    sector: str
    service: str
    since: datetime
    last_contact: datetime
    professionals: dict[str, str] = field(default_factory=dict)  # id -> role / name
    how: str = ""
    roles: dict[str, str] = field(default_factory=dict)  # id -> role, where the records give one


def service_of(record: dict[str, Any]) -> tuple[str, str]:
    """The (agency id, service name) a record's service or school is known by in the team."""
    svc = record.get("service") or record.get("school") or {}
    return svc.get("agency_id", ""), svc.get("service_name", "")


def leaves(kind: str, record: dict[str, Any]) -> bool:
    """Whether a record takes its service out of the team (a discharge, a closed case, a declined referral)."""
    return (kind in ("ServiceDischarged", "HospitalDischarged")
            or (kind == "SocialCareOutcome" and record.get("outcome_kind") in _CLOSED_OUTCOMES)
            or (kind == "ReferralOutcome" and record.get("outcome") == "declined"))


def team_around(entries: list[dict[str, Any]]) -> list[TeamMember]:
    """Every service and named professional currently involved with the child."""
    team: dict[tuple[str, str], TeamMember] = {}
    team_joins = records.catalogue().team_joins  # record types marked "hub.team_join" in their schema
    for e in entries:
        r, kind, when = e["record"], e["record_type"], e["occurred_at"]
        svc = r.get("service") or r.get("school")
        if not svc:
            continue
        k = service_of(r)
        if leaves(kind, r):
            team.pop(k, None)
            continue
        if kind not in team_joins:
            continue
        member = team.get(k)
        if member is None:
            member = team[k] = TeamMember(svc.get("agency_id", ""), svc.get("sector", ""), svc.get("service_name", ""),
                                          when, when, how=kind)
        member.last_contact = max(member.last_contact, when)
        for role_key in ROLE_KEYS:
            p = r.get(role_key)
            if isinstance(p, dict) and p.get("id"):
                member.professionals[p["id"]] = p.get("display_name") or p.get("role") or ""
                if p.get("role"):
                    member.roles[p["id"]] = str(p["role"])
        if kind == "KeyProfessionalChanged" and isinstance(r.get("previous"), dict):
            member.professionals.pop(r["previous"].get("id", ""), None)
            member.roles.pop(r["previous"].get("id", ""), None)
    return sorted(team.values(), key=lambda m: (m.sector, m.service))


@dataclass(frozen=True)
class Appointment:
    appointment_id: str
    event_id: str
    start: datetime
    service: str
    agency_id: str
    purpose: str | None
    contact_type: str
    rescheduled: bool
    professional_id: str | None = None  # the named professional the child will see, where booked with one
    professional: str | None = None  # their display name or role


def _who(record: dict[str, Any]) -> tuple[str | None, str | None]:
    p = record.get("professional")
    if not isinstance(p, dict) or not p.get("id"):
        return None, None
    return str(p["id"]), p.get("display_name") or p.get("role")


def _appointment(agency: str | None, ref: Any) -> tuple[str | None, str]:
    """An appointment as its agency names it. A FHIR booking's source id is ``Appointment/<id>`` while the
    cancellation, attendance or move names it by the reference's id alone (``<id>``): both are the same
    appointment."""
    return agency, str(ref).removeprefix("Appointment/")


def upcoming(entries: list[dict[str, Any]], now: datetime) -> list[Appointment]:
    """Booked appointments still ahead: moved ones at their new time, cancelled or recorded ones gone. An
    appointment is the booking agency's: a move, cancellation or attendance names it by its id *from that agency*
    (another agency's record with the same id, by chance or not, leaves it as it is)."""
    booked: dict[tuple[str | None, str], dict[str, Any]] = {}
    for e in entries:
        r, kind = e["record"], e["record_type"]
        agency = (r.get("service") or {}).get("agency_id")
        if kind == "AppointmentBooked":
            booked[_appointment(agency, r["meta"]["source_id"])] = {
                "id": r["meta"]["source_id"], "event_id": e["event_id"], "start": r["start"], "record": r,
                "rescheduled": r["meta"]["source_version"] > 1}
        elif kind == "AppointmentRescheduled" and _appointment(agency, r["appointment_id"]) in booked:
            booked[_appointment(agency, r["appointment_id"])].update(start=r["new_start"], rescheduled=True)
        elif kind in ("AppointmentCancelled", "AttendanceRecorded"):
            booked.pop(_appointment(agency, r["appointment_id"]), None)
    out = [Appointment(b["id"], b["event_id"], b["start"], b["record"]["service"]["service_name"],
                       b["record"]["service"]["agency_id"], b["record"].get("purpose"),
                       b["record"].get("contact_type", "other"), b["rescheduled"], *_who(b["record"]))
           for b in booked.values() if b["start"] >= now]
    return sorted(out, key=lambda a: a.start)
