from __future__ import annotations

import json

import pytest
from connector_helpers import FIXTURES, assert_no_identifiers, avro_validate

from connectors import health
from hub.core.errors import ValidationError

FHIR_JSON = "application/fhir+json"


def _by_type(result):
    return {e.record_type: e for e in result.events}


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("bundle-collection-cerys.json", FHIR_JSON),
        ("bundle-collection-cerys.xml", "application/fhir+xml; charset=utf-8"),
    ],
)
def test_collection_bundle_json_and_xml(fixture_bytes, name, content_type):
    result = health.parse_payload(fixture_bytes(f"health/{name}"), content_type)
    assert result.problems == []
    events = _by_type(result)
    assert set(events) == {
        "AppointmentBooked",
        "AttendanceRecorded",
        "ReferralMade",
        "ReportIssued",
        "DiagnosisRecorded",
        "ConsentGranted",
    }
    for event in result.events:
        avro_validate(event)
        assert event.subject.system == "nhs-number"
        assert event.subject.value == "9990000018"
        assert event.mapping == "uk-core-fhir@1"
        assert event.occurred_at.tzinfo is not None
    booked = events["AppointmentBooked"].body
    assert booked["service"]["agency_id"] == "7A6"
    assert booked["service"]["service_name"] == "Serennu Children's Centre SLT"
    assert booked["professional"]["display_name"] == "Ms Bethan Jones"
    assert booked["contact_type"] == "follow_up"
    assert booked["location"].startswith("Serennu")
    referral = events["ReferralMade"]
    assert referral.category == "mental_health"  # CAMHS (treatment function 711)
    assert referral.body["referrer_service"]["service_code"] == "652"
    assert events["ReportIssued"].body["report_kind"] == "speech_and_language_therapy"
    assert events["DiagnosisRecorded"].body["disclosure_hold"] is True
    assert events["DiagnosisRecorded"].body["code"] == "28055006"
    consent = events["ConsentGranted"]
    assert json.loads(consent.body["fhir_consent"])["resourceType"] == "Consent"
    assert consent.body["granted_by"] == "family"


def test_message_bundle_reschedule_and_cancel(fixture_bytes):
    result = health.parse_payload(fixture_bytes("health/bundle-message-appointments.json"), FHIR_JSON)
    assert result.problems == []
    kinds = [e.record_type for e in result.events]
    assert kinds == [
        "AppointmentBooked",
        "AppointmentRescheduled",
        "AppointmentCancelled",
    ]  # no MessageHeader
    moved = result.events[1]
    assert moved.source_version == 2
    assert moved.body["previous_start"].isoformat() == "2024-03-20T10:00:00+00:00"
    assert moved.body["new_start"].isoformat() == "2024-03-27T10:00:00+00:00"
    assert result.events[2].body["cancelled_by"] == "family"
    for event in result.events:
        avro_validate(event)


def test_transaction_bundle_admission_discharge_dna(fixture_bytes):
    result = health.parse_payload(fixture_bytes("health/bundle-transaction-admission.json"), FHIR_JSON)
    events = _by_type(result)
    assert events["HospitalAdmitted"].body["emergency"] is True
    assert events["HospitalDischarged"].body["follow_up"].startswith("Home")
    assert events["AttendanceRecorded"].body["outcome"] == "did_not_attend"
    assert events["AttendanceRecorded"].body["appointment_id"] == "appt-physio-7"
    assert {e.subject.value for e in result.events} == {"9990000026"}  # resolved via urn:uuid fullUrl
    for event in result.events:
        avro_validate(event)


def test_transaction_bundle_is_all_or_nothing():
    bundle = json.loads((FIXTURES / "health/bundle-transaction-admission.json").read_text())
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = "9990000019"
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(bundle), FHIR_JSON)
    assert "Bundle.entry[0].resource.identifier[0].value" in str(err.value)
    assert "modulus-11" in str(err.value)
    assert "9990000019" not in str(err.value)


def test_ndjson_keeps_good_lines_and_reports_bad(fixture_bytes):
    result = health.parse_payload(fixture_bytes("health/resources.ndjson"), "application/fhir+ndjson")
    kinds = [e.record_type for e in result.events]
    assert kinds == [
        "WaitingListEntered",
        "ResultAvailable",
        "PlanPublished",
        "SocialCareOutcome",
        "ReferralOutcome",
    ]
    flag = result.events[3]
    assert (flag.category, flag.body["outcome_kind"]) == ("child_protection", "child_protection_plan_started")
    assert flag.body["service"]["sector"] == "social_care"
    assert result.events[0].body["estimated_wait_days"] == 270
    assert result.events[4].body["outcome"] == "declined"
    by_row = {p.row: p for p in result.problems}
    assert set(by_row) == {3, 4}
    assert "malformed JSON" in by_row[3].message
    assert by_row[4].message == "resource type 'Observation' is not mapped by mapping uk-core-fhir@1"
    for event in result.events:
        avro_validate(event)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("appointment-booked.json", FHIR_JSON), ("appointment-booked.xml", "application/fhir+xml")],
)
def test_single_resource_with_identifier_references(fixture_bytes, name, content_type):
    result = health.parse_payload(fixture_bytes(f"health/{name}"), content_type)
    (event,) = result.events
    assert event.record_type == "AppointmentBooked"
    assert event.subject.value == "9990000026"
    assert event.body["service"]["agency_id"] == "7A6"
    avro_validate(event)


# --- bad input ---------------------------------------------------------------------------------


def _appointment(**changes):
    data = json.loads((FIXTURES / "health/appointment-booked.json").read_text())
    data.update(changes)
    return data


def test_single_resource_names_every_bad_field():
    data = _appointment(start="2024-13-45T10:00:00Z")
    data["participant"][0]["actor"]["identifier"]["value"] = "9990000027"
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(data), FHIR_JSON)
    text = str(err.value)
    assert "Appointment.start" in text
    assert_no_identifiers(text)


def test_invalid_nhs_number_in_reference_identifier():
    data = _appointment()
    data["participant"][0]["actor"]["identifier"]["value"] = "9990000027"
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(data), FHIR_JSON)
    (problem,) = err.value.problems
    assert problem.location == "Appointment.participant.actor.identifier.value"
    assert problem.message == "nhs-number identifier fails the modulus-11 check"


def test_unmapped_resource_type_is_refused():
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "Weight"}}
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(obs), FHIR_JSON)
    assert "resource type 'Observation' is not mapped by mapping uk-core-fhir@1" in str(err.value)


def test_unknown_resource_type_and_wrong_field_type():
    with pytest.raises(ValidationError, match="resourceType is not a FHIR R4 resource type"):
        health.parse_payload(b'{"resourceType": "Wibble"}', FHIR_JSON)
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(_appointment(participant="nobody")), FHIR_JSON)
    assert "Appointment.participant" in str(err.value)


def test_unresolvable_patient_reference():
    data = _appointment()
    data["participant"][0]["actor"] = {"reference": "Patient/missing"}
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(data), FHIR_JSON)
    assert "cannot be resolved in the Bundle or among the Patients this agency sent before" in str(err.value)


def test_missing_service_reference_named():
    data = _appointment()
    data["participant"] = data["participant"][:1]
    with pytest.raises(ValidationError) as err:
        health.parse_payload(json.dumps(data), FHIR_JSON)
    assert "identifies the producing service" in str(err.value)


def test_entered_in_error_and_out_of_range_dates():
    result = health.parse_payload(json.dumps(_appointment(status="entered-in-error")), FHIR_JSON)
    assert result.events[0].status == "entered_in_error"
    data = _appointment(start="1850-01-01T10:00:00Z", end="1850-01-01T11:00:00Z")
    with pytest.raises(ValidationError, match="start is before 1900"):
        health.parse_payload(json.dumps(data), FHIR_JSON)
    data = _appointment(meta={"lastUpdated": "2099-01-01T00:00:00Z"})
    with pytest.raises(ValidationError, match="occurred_at is more than 2 days in the future"):
        health.parse_payload(json.dumps(data), FHIR_JSON)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"{not json", FHIR_JSON, "malformed JSON at line 1 column 2"),
        (
            b"<Appointment xmlns='http://hl7.org/fhir'><status value='booked'/>",
            "application/fhir+xml",
            "malformed XML at line 1",
        ),
        (b"<Appointment><status value='booked'/></Appointment>", "application/fhir+xml", "FHIR namespace"),
        (b"{}", "text/plain", "content type text/plain is not accepted; send application/fhir+json"),
        (b'{"resourceType": "Bundle", "type": "document"}', FHIR_JSON, "Bundle.type must be one of"),
    ],
)
def test_unreadable_payloads(body, content_type, expected):
    with pytest.raises(ValidationError) as err:
        health.parse_payload(body, content_type)
    assert expected in str(err.value)


def test_collection_bundle_reports_bad_entries_by_index():
    bundle = json.loads((FIXTURES / "health/bundle-collection-cerys.json").read_text())
    bundle["entry"][7]["resource"]["start"] = "yesterday"
    bundle["entry"].append(
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}}
    )
    result = health.parse_payload(json.dumps(bundle), FHIR_JSON)
    assert len(result.events) == 5
    rows = {p.row for p in result.problems}
    assert rows == {7, 13}
    assert any(p.location == "Bundle.entry[7].resource.start" for p in result.problems)


def test_previous_version_lookup_detects_reschedule():
    data = _appointment(
        meta={"versionId": "4", "lastUpdated": "2024-03-02T09:00:00Z"},
        start="2024-03-21T10:00:00Z",
        end="2024-03-21T10:45:00Z",
    )
    result = health.parse_payload(
        json.dumps(data), FHIR_JSON, previous=lambda kind, rid: {"start": "2024-03-20T10:00:00Z"}
    )
    assert result.events[0].record_type == "AppointmentRescheduled"


@pytest.mark.parametrize(("partial", "expected"), [
    ("2024", "2024-01-01T00:00:00+00:00"),
    ("2024-03", "2024-03-01T00:00:00+00:00"),
    ("2024-07-05", "2024-07-05T00:00:00+00:00"),  # in summer time too: UTC, not Europe/London
])
def test_a_partial_fhir_date_is_the_start_of_its_period_in_utc(partial, expected):
    data = _appointment(created=partial)
    data.pop("meta", None)
    result = health.parse_payload(json.dumps(data), FHIR_JSON)
    assert result.events[0].occurred_at.isoformat() == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2024", "2024-01-01T00:00:00+00:00"), ("2024-03", "2024-03-01T00:00:00+00:00"),
    ("2024-03-05", "2024-03-05T00:00:00+00:00"), ("2024-03-05T10:00:00+01:00", "2024-03-05T10:00:00+01:00"),
])
def test_to_datetime_reads_partial_dates_as_the_start_of_the_period(text, expected):
    from connectors.values import to_datetime

    assert to_datetime(text).isoformat() == expected
    for bad in ("2024-13", "24", "2024-02-30"):
        with pytest.raises(ValueError, match="expected a date-time"):
            to_datetime(bad)


def test_service_requests_sharing_a_requisition_are_one_multi_agency_referral():
    """A referring professional's Bundle of ServiceRequests, one per service, with one requisition
    (FHIR's group identifier): each becomes a ReferralMade carrying it, so the hub tracks them as one referral."""
    bundle = json.loads((FIXTURES / "health/bundle-collection-cerys.json").read_text())
    (entry,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    requisition = {"system": "https://fhir.abuhb.example/referral", "value": "iscan-2024-0042"}
    second = json.loads(json.dumps(entry))
    second["fullUrl"] = second["fullUrl"].replace("ref-3001", "ref-3002")
    second["resource"]["id"] = "ref-3002"
    second["resource"]["performer"] = [{"reference": "HealthcareService/serennu-slt"}]
    for e in (entry, second):
        e["resource"]["requisition"] = requisition
    bundle["entry"].append(second)
    result = health.parse_payload(json.dumps(bundle), FHIR_JSON)
    assert result.problems == []
    parts = [e for e in result.events if e.record_type == "ReferralMade"]
    assert len(parts) == 2 and {p.body["requisition"] for p in parts} == {"iscan-2024-0042"}
    assert len({p.body["service"]["service_name"] for p in parts}) == 2
