"""FHIR the REST way, through `hub up`: an agency POSTs the Patient, then, in a separate request, an
Appointment whose participant is ``Patient/{id}``. The appointment lands on the linked child's timeline;
another agency sending the same reference is refused, because it never sent that Patient."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.demo.identifiers import nhs_number
from tests.scenarios.running import Coordinator, RunningHub
from tests.support import bearer

pytestmark = pytest.mark.scenario

FHIR = {"Content-Type": "application/fhir+json"}
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/"


def patient(resource_id: str, nhs: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": resource_id, "meta": {"profile": [UKCORE + "UKCore-Patient"]},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
        "name": [{"family": "Evans", "given": ["Cerys"]}], "birthDate": "2019-03-02",
    }


def appointment(resource_id: str, patient_id: str) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(days=14)
    return {
        "resourceType": "Appointment", "id": resource_id, "meta": {"profile": [UKCORE + "UKCore-Appointment"]},
        "status": "booked", "description": "Paediatric review",
        "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat(),
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"type": "Organization", "display": "Aneurin Bevan University Health Board",
                       "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "7A6"}},
             "status": "accepted"},
        ],
    }


def test_patient_then_appointment_in_separate_requests(hub: RunningHub) -> None:
    tag = uuid.uuid4().hex[:8]
    nhs = nhs_number(random.randrange(1_000_000))
    coordinator = Coordinator(hub, f"cc-fhirrefs-{tag}")
    household, [child] = coordinator.enrol(1)
    coordinator.link(household, child, "nhs-number", nhs)
    trust = {**bearer("agency", f"abuhb-{tag}", agency="7A6"), **FHIR}
    other = {**bearer("agency", f"cvuhb-{tag}", agency="7A4"), **FHIR}
    patient_id, appointment_id = f"pat-{tag}", f"appt-{tag}"

    sent = hub.call("POST", "/fhir/Patient", trust, content=json.dumps(patient(patient_id, nhs)))
    assert sent.status_code in (200, 201), sent.text

    # another agency's Patient/{same id} is not this agency's: refused, naming the element, no identifier echoed
    refused = hub.call("POST", "/fhir/Appointment", other, content=json.dumps(appointment(f"x-{tag}", patient_id)))
    assert refused.status_code == 422, refused.text
    assert "participant.actor" in refused.text and "cannot be resolved" in refused.text
    assert nhs not in refused.text

    booked = hub.call("POST", "/fhir/Appointment", trust, content=json.dumps(appointment(appointment_id, patient_id)))
    assert booked.status_code == 201, booked.text

    def entries() -> list[tuple[str, str]]:
        return [(e["record_type"], e["child_id"]) for e in coordinator.timeline(household)]

    hub.eventually(lambda: ("AppointmentBooked", child) in entries(), "the appointment on the child's timeline",
                   show=entries)
    assert entries() == [("AppointmentBooked", child)]  # the refused one landed nowhere
