"""Audit exports: FHIR R4 AuditEvent (IHE Basic Audit Log Patterns shapes) and CSV.

* :func:`fhir_audit_event` — one :class:`hub.audit.AuditRecord` as an R4 ``AuditEvent`` dict. Reads
  (``read_timeline``, ``read_report``) use type DCM 110110 "Patient Record" with subtype
  ``search``/``read`` from http://hl7.org/fhir/restful-interaction, as in BALP's RESTful patient
  audit; shares and exports use DCM 110106 "Export". The hub's own action code is always a further
  subtype. The actor is the requestor agent (``who.identifier.value``), the observer is
  "family-hub", the data reference is an entity ``what.identifier`` and the pseudonymous child is the
  patient entity (role 1 "Patient"). The chain seq and hash travel in the data entity's details.
* :func:`fhir_bundle` — a ``collection`` Bundle of those, :func:`export_fhir` its JSON text.
* :func:`export_csv` — one row per record, columns :data:`CSV_COLUMNS` in that order.
"""

from __future__ import annotations

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
    "override": (_PATIENT_RECORD, "E", None),
    "override_review": (_APP_ACTIVITY, "C", None),
    "consent_change": (_PATIENT_RECORD, "U", "update"),
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


def fhir_audit_event(record: AuditRecord) -> dict[str, Any]:
    """One audit record as a FHIR R4 AuditEvent (a dict; validates with fhir.resources R4B)."""
    type_, action, restful = _SHAPES.get(record.action, (_APP_ACTIVITY, "E", None))
    subtype = [{"system": RESTFUL, "code": restful, "display": restful}] if restful else []
    subtype.append({"system": HUB_ACTION_SYSTEM, "code": record.action})
    agent: dict[str, Any] = {"requestor": True, "who": {"identifier": {"value": record.actor}}}
    if record.actor_role:
        agent["role"] = [{"text": record.actor_role}]
    if record.source:
        agent["network"] = {"address": record.source, "type": "2" if _is_ip(record.source) else "1"}
    data_details = [{"type": "audit-seq", "valueString": str(record.seq)},
                    {"type": "audit-hash", "valueString": record.hash}]
    if record.subject_household:
        data_details.append({"type": "household", "valueString": record.subject_household})
    if record.legal_basis:
        data_details.append({"type": "legal-basis", "valueString": record.legal_basis})
    if record.detail:
        data_details.append({"type": "detail", "valueString": json.dumps(record.detail, sort_keys=True)})
    entities: list[dict[str, Any]] = [{
        "what": {"identifier": {"value": record.data_ref or f"audit:{record.seq}"}},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2",
                 "display": "System Object"},
        "detail": data_details,
    }]
    if record.subject_child:
        entities.append({
            "what": {"identifier": {"system": HUB_CHILD_SYSTEM, "value": record.subject_child}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
                     "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1",
                     "display": "Patient"},
        })
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"audit-{record.seq}",
        "type": type_,
        "subtype": subtype,
        "action": action,
        "recorded": record.recorded_at.isoformat(),
        "outcome": "4" if record.action == "login_denied" else "0",
        "agent": [agent],
        "source": {"observer": {"display": OBSERVER},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4", "display": "Application Server"}]},
        "entity": entities,
    }
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
