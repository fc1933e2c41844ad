"""Payloads in the agencies' own formats, as their systems would send them to the hub.

Health boards send FHIR R4 / UK Core resources (``/v1/ingest/health``), the local authority its
social-care events (``/v1/ingest/social-care``), schools their MIS events (``/v1/ingest/education``).
The services are the seed journeys' (``hub.demo.scenario``); every identifier is synthetic
(``hub.demo.identifiers``) and every name a service or role, never a person's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.identifiers import FHIR_NHS_NUMBER_SYSTEM, FHIR_ODS_ORGANISATION_SYSTEM
from hub.demo.scenario import ABUHB, CAV, NEWPORT

TREATMENT_FUNCTION = "https://fhir.nhs.uk/CodeSystem/NHSDataModelAndDictionary-treatment-function"


@dataclass(frozen=True)
class HealthService:
    """A health board service: ODS code and name of the board, the service's name and treatment function."""

    agency_id: str
    agency_name: str
    service_name: str
    treatment_function: str


@dataclass(frozen=True)
class School:
    urn: str
    name: str


SLT = HealthService(*ABUHB, "Speech and language therapy, Serennu", "652")
PAEDIATRICS = HealthService(*ABUHB, "Community paediatrics, Serennu", "420")
CAV_NEUROLOGY = HealthService(*CAV, "Paediatric neurology, Noah's Ark Children's Hospital", "421")
LA_CODE, LA_NAME = NEWPORT
MAES_EBBW = School("W06000022-S1", "Maes Ebbw Special School")


def stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


# --- health: FHIR R4 / UK Core -----------------------------------------------------------------


def _patient(nhs: str) -> dict[str, Any]:
    return {"type": "Patient", "identifier": {"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs}}


def _resource(kind: str, rid: str, version: int, updated: datetime, svc: HealthService) -> dict[str, Any]:
    """A resource carrying its producing service as a contained HealthcareService (``#svc``)."""
    return {
        "resourceType": kind,
        "id": rid,
        "meta": {"versionId": str(version), "lastUpdated": stamp(updated)},
        "contained": [{
            "resourceType": "HealthcareService", "id": "svc", "name": svc.service_name,
            "type": [{"coding": [{"system": TREATMENT_FUNCTION, "code": svc.treatment_function}]}],
            "providedBy": {"identifier": {"system": FHIR_ODS_ORGANISATION_SYSTEM, "value": svc.agency_id},
                           "display": svc.agency_name},
        }],
    }


def referral(rid: str, nhs: str, at: datetime, to: HealthService, reason: str) -> dict[str, Any]:
    """A ServiceRequest: a referral to ``to`` (hub ReferralMade)."""
    return {**_resource("ServiceRequest", rid, 1, at, to), "status": "active", "intent": "order",
            "priority": "routine", "subject": _patient(nhs), "authoredOn": stamp(at),
            "performer": [{"reference": "#svc"}], "reasonCode": [{"text": reason}]}


def report(rid: str, nhs: str, at: datetime, by: HealthService, title: str) -> dict[str, Any]:
    """A DocumentReference: a report written by ``by`` (hub ReportIssued)."""
    return {**_resource("DocumentReference", rid, 1, at, by), "status": "current",
            "type": {"coding": [{"system": TREATMENT_FUNCTION, "code": by.treatment_function}]},
            "subject": _patient(nhs), "date": stamp(at), "author": [{"reference": "#svc"}],
            "description": title,
            "content": [{"attachment": {"contentType": "application/pdf", "title": title,
                                        "url": f"https://docs.example.invalid/{rid}.pdf"}}]}


def appointment(rid: str, nhs: str, updated: datetime, start: datetime, minutes: int, at: HealthService,
                purpose: str, version: int = 1) -> dict[str, Any]:
    """An Appointment; a later ``version`` with another ``start`` moves it (the same hub entry)."""
    end = start.timestamp() + minutes * 60
    return {**_resource("Appointment", rid, version, updated, at), "status": "booked",
            "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276",
                                            "code": "FOLLOWUP"}]},
            "description": purpose, "start": stamp(start),
            "end": stamp(datetime.fromtimestamp(end, start.tzinfo)),
            "participant": [{"actor": _patient(nhs), "status": "accepted"},
                            {"actor": {"reference": "#svc"}, "status": "accepted"}]}


# --- local authority: social-care events -------------------------------------------------------


def la_event(kind: str, eid: str, at: datetime, person_id: str, team: str, *, version: int = 1,
             **fields: Any) -> dict[str, Any]:
    """One social-care event of ``kind`` (referral, referral_declined, social_worker_allocated, ...)."""
    return {"event_type": kind, "event_id": eid, "version": version, "occurred_at": stamp(at),
            "person_id": person_id, "la_code": LA_CODE, "la_name": LA_NAME, "team": team, **fields}


# --- education: school MIS events --------------------------------------------------------------


def school_event(kind: str, eid: str, at: datetime, upn: str, school: School, *, version: int = 1,
                 **fields: Any) -> dict[str, Any]:
    """One school event of ``kind`` (school_placement, attendance, exclusion, ...)."""
    return {"event_type": kind, "event_id": eid, "version": version, "occurred_at": stamp(at), "upn": upn,
            "la_code": "879", "school_urn": school.urn, "school_name": school.name, **fields}
