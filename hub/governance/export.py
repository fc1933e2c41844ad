"""Audit exports: FHIR R4 AuditEvent (IHE Basic Audit Log Patterns shapes) and CSV.

* :func:`fhir_audit_event` — one :class:`hub.audit.AuditRecord` as an R4 ``AuditEvent`` dict. Reads
  (``read_timeline`` a search, ``read_report`` a read), consent changes (update) and erasures
  (delete) follow IHE BALP (type ``rest``, restful-interaction subtype, ``meta.profile``, typed
  client/server/user agents, the child as a ``Patient`` reference); shares and exports use DCM
  110106 "Export". The hub's own action code is always a further subtype. The actor is the user
  agent and requestor (``who.identifier.value``), the observer is "family-hub". The chain seq and
  hash travel in the data entity's details.
* :func:`fhir_bundle` — a ``collection`` Bundle of those, :func:`export_fhir` its JSON text.
* :func:`export_csv` — one row per record, columns :data:`CSV_COLUMNS` in that order.
"""

from __future__ import annotations

import base64
import csv
import io
import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from hub.governance.audit import AuditRecord

DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
HUB_ACTION_SYSTEM = "https://family-hub.example/fhir/CodeSystem/audit-action"
HUB_PURPOSE_SYSTEM = "https://family-hub.example/fhir/CodeSystem/purpose"
HUB_HOUSEHOLD_SYSTEM = "https://family-hub.example/fhir/NamingSystem/household-pseudonym"
HUB_CHILD_SYSTEM = "https://family-hub.example/fhir/NamingSystem/child-pseudonym"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBSERVER = "family-hub"

CSV_COLUMNS = ("seq", "recorded_at", "actor", "actor_role", "action", "subject_household", "subject_child",
               "data_ref", "purpose", "legal_basis", "detail", "source", "prev_hash", "hash")

_PATIENT_RECORD = {"system": DCM, "code": "110110", "display": "Patient Record"}
_EXPORT = {"system": DCM, "code": "110106", "display": "Export"}
_APP_ACTIVITY = {"system": DCM, "code": "110100", "display": "Application Activity"}
_USER_AUTH = {"system": DCM, "code": "110114", "display": "User Authentication"}

# action -> (AuditEvent.type, AuditEvent.action, restful-interaction subtype or None)
_SHAPES: dict[str, tuple[dict[str, str], str, str | None]] = {
    "read_timeline": (_PATIENT_RECORD, "R", "search"),
    "read_report": (_PATIENT_RECORD, "R", "read"),
    "share": (_EXPORT, "R", None),
    "export": (_EXPORT, "R", None),
    "withhold": (_APP_ACTIVITY, "E", None),
    "hold": (_APP_ACTIVITY, "E", None),
    "release": (_APP_ACTIVITY, "E", None),
    "cancel": (_APP_ACTIVITY, "E", None),
    "withdrawal_notice": (_APP_ACTIVITY, "E", None),
    "recall": (_APP_ACTIVITY, "E", None),
    "override": (_PATIENT_RECORD, "E", None),
    "override_review": (_APP_ACTIVITY, "C", None),
    "consent_change": (_PATIENT_RECORD, "U", "update"),
    "summary_change": (_PATIENT_RECORD, "U", "update"),
    "identity_link": (_PATIENT_RECORD, "C", None),
    "identity_unlink": (_PATIENT_RECORD, "D", None),
    "erasure": (_PATIENT_RECORD, "D", "delete"),
    "login_denied": (_USER_AUTH, "E", None),
}
# Hub purposes that have a v3 ActReason equivalent.
_PURPOSES = {"direct_care": "TREAT", "care": "TREAT", "care_coordination": "TREAT", "family_request": "PATRQT",
             "operations": "HOPERAT", "audit": "HOPERAT", "public_health": "PUBHLTH", "legal": "HLEGAL"}


def _purpose(purpose: str) -> dict[str, Any]:
    key = purpose.strip().lower().replace(" ", "_").replace("-", "_")
    coding = [{"system": HUB_PURPOSE_SYSTEM, "code": key}]
    if key in _PURPOSES:
        coding.insert(0, {"system": ACT_REASON, "code": _PURPOSES[key]})
    return {"coding": coding, "text": purpose}


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_REST = {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "Restful Operation"}
#: restful subtype -> (BALP profile without / with a patient, AuditEvent.action)
_BALP = {"read": ("IHE.BasicAudit.Read", "IHE.BasicAudit.PatientRead", "R"),
         "search": ("IHE.BasicAudit.Query", "IHE.BasicAudit.PatientQuery", "E"),
         "update": ("IHE.BasicAudit.Update", "IHE.BasicAudit.PatientUpdate", "U"),
         "delete": ("IHE.BasicAudit.Delete", "IHE.BasicAudit.PatientDelete", "D")}


def _agents(record: AuditRecord) -> list[dict[str, Any]]:
    """BALP's typed agents: the client (Source Role ID), the server (Destination Role ID) and the user
    (information recipient), who is the requestor."""
    user: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": {"identifier": {"value": record.actor}}, "requestor": True}
    if record.actor_role:
        user["role"] = [{"text": record.actor_role}]
    client: dict[str, Any] = {
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"display": record.actor_role or "client"}, "requestor": False}
    if record.source:
        network = {"address": record.source, "type": "2" if _is_ip(record.source) else "1"}
        user["network"] = network
        client["network"] = network
    server = {"type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
              "who": {"display": OBSERVER}, "requestor": False}
    return [user, client, server]


def _patient(child: str) -> dict[str, Any]:
    return {"what": {"reference": f"Patient/{child}", "identifier": {"system": HUB_CHILD_SYSTEM, "value": child}},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}}


def fhir_audit_event(record: AuditRecord) -> dict[str, Any]:
    """One audit record as a FHIR R4 AuditEvent (a dict; validates with fhir.resources R4B).

    RESTful actions (reads, searches, consent updates, erasures) are shaped to IHE Basic Audit Log
    Patterns: type ``rest``, the restful-interaction subtype, BALP's action, ``meta.profile`` naming
    the BALP profile (its Patient variant when the record names a child), typed client, server and user
    agents, the data entity (a query as base64 for a search) and the child as a ``Patient`` reference.
    Others keep their DICOM event type (Export, Application Activity, User Authentication)."""
    type_, action, restful = _SHAPES.get(record.action, (_APP_ACTIVITY, "E", None))
    subtype = [{"system": RESTFUL, "code": restful, "display": restful}] if restful else []
    subtype.append({"system": HUB_ACTION_SYSTEM, "code": record.action})
    data_details = [{"type": "audit-seq", "valueString": str(record.seq)},
                    {"type": "audit-hash", "valueString": record.hash}]
    if record.subject_household:
        data_details.append({"type": "household", "valueString": record.subject_household})
    if record.legal_basis:
        data_details.append({"type": "legal-basis", "valueString": record.legal_basis})
    if record.detail:
        data_details.append({"type": "detail", "valueString": json.dumps(record.detail, sort_keys=True)})
    ref = record.data_ref or f"audit:{record.seq}"
    data: dict[str, Any] = {"what": {"identifier": {"value": ref}},
                            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                            "detail": data_details}
    event: dict[str, Any] = {"resourceType": "AuditEvent", "id": f"audit-{record.seq}"}
    if restful in _BALP:
        plain, with_patient, action = _BALP[restful]
        event["meta"] = {"profile": [BALP + (with_patient if record.subject_child else plain)]}
        type_ = _REST
        if restful == "search":
            data["role"] = {"system": OBJECT_ROLE, "code": "24", "display": "Query"}
            data["query"] = base64.b64encode(ref.encode()).decode()
        else:
            data["role"] = {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
    entities = [data] + ([_patient(record.subject_child)] if record.subject_child else [])
    event.update({
        "type": type_,
        "subtype": subtype,
        "action": action,
        "recorded": record.recorded_at.isoformat(),
        "outcome": "4" if record.action == "login_denied" else "0",
        "agent": _agents(record),
        "source": {"observer": {"display": OBSERVER},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4", "display": "Application Server"}]},
        "entity": entities,
    })
    if record.purpose:
        event["purposeOfEvent"] = [_purpose(record.purpose)]
    return event


def fhir_bundle(records: Iterable[AuditRecord]) -> dict[str, Any]:
    """A FHIR ``collection`` Bundle of AuditEvents, in seq order."""
    entries = [{"fullUrl": f"urn:family-hub:audit:{r.seq}", "resource": fhir_audit_event(r)} for r in records]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def export_fhir(records: Iterable[AuditRecord]) -> str:
    return json.dumps(fhir_bundle(records), indent=2)


def export_csv(records: Iterable[AuditRecord]) -> str:
    """CSV text: a header of :data:`CSV_COLUMNS`, then one row per record (detail as compact JSON)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([r.seq, r.recorded_at.isoformat(), r.actor, r.actor_role, r.action,
                         r.subject_household or "", r.subject_child or "", r.data_ref or "", r.purpose or "",
                         r.legal_basis or "", json.dumps(r.detail, sort_keys=True, separators=(",", ":")),
                         r.source or "", r.prev_hash, r.hash])
    return buf.getvalue()
