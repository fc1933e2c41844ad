"""UK Core resources as agencies send them: dates in every element UK Core uses, Patients without an NHS
number, any ``meta.versionId``, references across requests (through a directory), by identifier, to
contained resources and by absolute URL, JSON and XML."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from connector_helpers import FIXTURES, assert_no_identifiers, avro_validate

from connectors import health
from connectors.health import context
from connectors.health.directory import summary
from hub.core.errors import ValidationError

FHIR_JSON = "application/fhir+json"
UKCORE = FIXTURES / "ukcore"
PATIENT = "UKCore-Patient-RichardSmith-Example"
ORG = "UKCore-Organization-LeedsTeachingHospital-Example"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((UKCORE / f"{name}.json").read_text()))


class Directory:
    """An agency's remembered resources, as the hub keeps them (a Patient by a stand-in pseudonym)."""

    def __init__(self) -> None:
        self.kept: dict[tuple[str, str], dict[str, Any]] = {}

    def lookup(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        found = self.kept.get((resource_type, resource_id))
        if found is None:
            return None
        found = dict(found)
        if resource_type == "Patient":
            identity = found.pop("identity")
            found["pseudonym"] = "s-" + ("a" if identity["system"] == "nhs-number" else "b") * 26
        return found

    def remember(self, resource_type: str, resource_id: str, kept: dict[str, Any], version: int) -> None:
        self.kept[(resource_type, resource_id)] = kept


def sent_before(*names: str) -> Directory:
    """A directory holding what earlier requests of the agency accepted."""
    directory = Directory()
    for name in names:
        for result in health.iter_payload(json.dumps(load(name)), FHIR_JSON, directory=directory):
            assert result.problems == () and result.remember is not None
            r = result.remember
            directory.remember(r.resource_type, r.resource_id, r.summary, r.version)
    return directory


def bundle(*resources: dict[str, Any], kind: str = "collection") -> str:
    base = "https://fhir.example-trust.nhs.uk/fhir"
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": entries})


MAPPED = [
    ("UKCore-Appointment-Example", "AppointmentBooked", "2024-05-06T09:30:00+00:00"),
    ("UKCore-DiagnosticReport-Effective-Example", "ResultAvailable", "2024-04-02T10:15:00+00:00"),
    ("UKCore-DiagnosticReport-Period-Example", "ReportIssued", "2024-04-03T09:00:00+00:00"),
    ("UKCore-Encounter-Example", "AttendanceRecorded", "2024-04-04T09:00:00+00:00"),
    ("UKCore-ServiceRequest-Example", "ReferralMade", "2024-04-10T09:00:00+00:00"),
    ("UKCore-DocumentReference-Example", "ReportIssued", "2024-04-05T08:00:00+00:00"),
    ("UKCore-CarePlan-Example", "PlanPublished", "2024-04-07T00:00:00+00:00"),
]


@pytest.mark.parametrize(("name", "record_type", "occurred"), MAPPED)
def test_each_resource_maps_when_its_patient_was_sent_in_an_earlier_request(name, record_type, occurred):
    directory = sent_before(PATIENT, ORG)
    result = health.parse_payload(json.dumps(load(name)), FHIR_JSON, directory=directory)
    assert result.problems == []
    (event,) = result.events
    assert event.record_type == record_type
    assert (event.subject.system, event.subject.value) == ("pseudonym", "s-" + "a" * 26)
    assert event.body["service"]["agency_id"] == "RR8"
    avro_validate(event)
    assert event.occurred_at.isoformat() == occurred


def test_an_appointment_ahead_was_booked_no_later_than_it_was_sent():
    data = load("UKCore-Appointment-Example")
    start = datetime.now(UTC) + timedelta(days=40)
    data["start"], data["end"] = start.isoformat(), (start + timedelta(hours=1)).isoformat()
    (event,) = health.parse_payload(json.dumps(data), FHIR_JSON, directory=sent_before(PATIENT, ORG)).events
    assert event.occurred_at <= datetime.now(UTC)
    assert event.body["start"] > event.occurred_at


@pytest.mark.parametrize(("name", "record_type", "occurred"), MAPPED)
def test_each_resource_maps_in_a_bundle_with_its_patient(name, record_type, occurred):
    result = health.parse_payload(bundle(load(PATIENT), load(ORG), load(name)), FHIR_JSON)
    assert result.problems == []
    (event,) = result.events
    assert event.record_type == record_type
    assert (event.subject.system, event.subject.value) == ("nhs-number", "9990000026")


def test_without_the_directory_a_patient_reference_is_refused_naming_the_element():
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(load("UKCore-Encounter-Example")), FHIR_JSON, directory=Directory())
    assert "Encounter.subject" in str(err.value)
    assert "cannot be resolved in the Bundle or among the Patients this agency sent before" in str(err.value)


def test_another_agency_does_not_resolve_the_reference():
    first = sent_before(PATIENT, ORG)
    second = Directory()
    second.kept = {k: v for k, v in first.kept.items() if k[0] == "Organization"}
    with pytest.raises(ValidationError, match="cannot be resolved"):
        health.parse_payload(json.dumps(load("UKCore-Encounter-Example")), FHIR_JSON, directory=second)


def test_the_directory_keeps_no_nhs_number_and_no_name():
    kept = sent_before(PATIENT).kept[("Patient", PATIENT)]
    assert set(kept) == {"resourceType", "id", "identity"}  # the hub pseudonymises identity before storing
    assert kept["identity"] == {"system": "nhs-number", "value": "9990000026"}
    assert "Albert" not in json.dumps(kept) and "2016" not in json.dumps(kept)
    org = summary(load(ORG))
    assert org["identifier"] == [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8"}]


def test_reference_identifier_contained_practitioner_and_string_version_id():
    result = health.parse_payload(json.dumps(load("UKCore-Appointment-Identifier-Example")), FHIR_JSON)
    assert result.problems == []
    (event,) = result.events
    assert (event.subject.system, event.subject.value) == ("nhs-number", "9990000026")
    assert event.body["professional"]["display_name"] == "Dr Anita Patel"
    assert event.body["service"]["agency_id"] == "RR8"
    # versionId a7f3-b2 is not a number: the version is meta.lastUpdated in epoch milliseconds
    assert event.source_version == 1714550400000
    later = load("UKCore-Appointment-Identifier-Example")
    later["meta"] = {"versionId": "b9", "lastUpdated": "2024-05-02T08:00:00+00:00"}
    assert health.parse_payload(json.dumps(later), FHIR_JSON).events[0].source_version > event.source_version
    numeric = load("UKCore-Appointment-Identifier-Example")
    numeric["meta"]["versionId"] = "3"
    assert health.parse_payload(json.dumps(numeric), FHIR_JSON).events[0].source_version == 3


def test_missing_date_is_refused_naming_the_elements_looked_for():
    data = load("UKCore-Appointment-NoDate-Example")
    with pytest.raises(ValidationError) as err:
        health.parse_payload(bundle(load(PATIENT), load(ORG), data, kind="transaction"), FHIR_JSON)
    message = str(err.value)
    for element in ("meta.lastUpdated", "created", "start", "requestedPeriod.start"):
        assert element in message
    assert_no_identifiers(message)
    report = load("UKCore-DiagnosticReport-Effective-Example")
    del report["effectiveDateTime"]
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(report), FHIR_JSON, directory=sent_before(PATIENT, ORG))
    assert "issued" in str(err.value) and "effectiveDateTime" in str(err.value)
    assert "effectivePeriod.start" in str(err.value)


def test_transaction_with_a_patient_without_nhs_number_is_accepted_on_its_local_identifier():
    payload = (UKCORE / "Bundle-transaction-local-patient.json").read_bytes()
    directory = Directory()
    results = list(health.iter_payload(payload, FHIR_JSON, directory=directory))
    assert all(r.problems == () for r in results)
    (event,) = [r.event for r in results if r.event is not None]
    assert event.record_type == "AttendanceRecorded"
    assert (event.subject.system, event.subject.value) == ("other", "https://fhir.example-trust.nhs.uk/Id/mrn|RS-998877")
    remembered = {r.remember.resource_type: r.remember for r in results if r.remember is not None}
    assert remembered["Patient"].summary["identity"]["system"] == "other"


def test_patient_without_any_identifier_is_refused_naming_the_element():
    patient = load("UKCore-Patient-LocalOnly-Example")
    del patient["identifier"]
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(patient), FHIR_JSON)
    assert "Patient.identifier" in str(err.value) and "neither an NHS number" in str(err.value)


def test_xml_bundle_with_absolute_references_and_extensions():
    payload = (UKCORE / "Bundle-collection-diagnosticreport.xml").read_bytes()
    result = health.parse_payload(payload, "application/fhir+xml")
    assert result.problems == []
    (event,) = result.events
    assert event.record_type == "ResultAvailable"
    assert event.occurred_at.isoformat() == "2024-04-02T10:15:00+00:00"
    assert event.subject.value == "9990000026"


def test_references_resolve_by_absolute_url_and_history():
    directory = sent_before(PATIENT, ORG)
    encounter = load("UKCore-Encounter-Example")
    encounter["subject"] = {"reference": f"https://other.example/fhir/Patient/{PATIENT}/_history/2"}
    result = health.parse_payload(json.dumps(encounter), FHIR_JSON, directory=directory)
    assert result.events[0].subject.system == "pseudonym"
    assert context.planned({"start": "2999-01-01T00:00:00+00:00"}) < "2999"
