"""Connectors say when an entry mentions someone other than the child, by relationship only: the FHIR
extension (or security label) on a report or condition, the social-care ``third_party`` column. An unknown
code is refused naming the field, never echoing what was sent (it could be a name)."""

from __future__ import annotations

import json

import pytest
from connector_helpers import FIXTURES, assert_no_identifiers, avro_validate

from connectors import health, social_care
from hub.core.errors import ValidationError

EXTENSION = "https://fhir.familyhub.uk/StructureDefinition/third-party"
SECURITY = "https://fhir.familyhub.uk/CodeSystem/third-party"


def cerys_bundle() -> dict:
    return json.loads((FIXTURES / "health/bundle-collection-cerys.json").read_text())


def resource(bundle: dict, kind: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def test_a_fhir_report_and_condition_say_which_relation_they_mention():
    bundle = cerys_bundle()
    resource(bundle, "DocumentReference").setdefault("extension", []).append({"url": EXTENSION, "valueCode": "MTH"})
    resource(bundle, "Condition").setdefault("meta", {}).setdefault("security", []).append(
        {"system": SECURITY, "code": "sibling"})

    result = health.parse_payload(json.dumps(bundle), "application/fhir+json")

    assert result.problems == []
    events = {e.record_type: e for e in result.events}
    assert events["ReportIssued"].body["third_party"] == "parent"
    assert events["DiagnosisRecorded"].body["third_party"] == "sibling"
    assert events["ReferralMade"].body.get("third_party") is None  # not a field of a referral
    for event in result.events:
        avro_validate(event)


def test_without_the_extension_nothing_is_said():
    result = health.parse_payload(json.dumps(cerys_bundle()), "application/fhir+json")
    events = {e.record_type: e for e in result.events}
    assert events["ReportIssued"].body["third_party"] is None


def test_an_unknown_relation_is_refused_without_repeating_it():
    bundle = cerys_bundle()
    resource(bundle, "DocumentReference").setdefault("extension", []).append(
        {"url": EXTENSION, "valueCode": "Mrs Gwen Evans"})

    result = health.parse_payload(json.dumps(bundle), "application/fhir+json")

    (problem,) = result.problems
    assert "third_party has a code the mapping does not know" in problem.message
    assert "Gwen" not in problem.message
    assert "ReportIssued" not in {e.record_type for e in result.events}  # that entry only; the rest arrive
    assert "DiagnosisRecorded" in {e.record_type for e in result.events}


def test_a_social_care_row_names_the_relation_in_its_own_column():
    data = json.loads((FIXTURES / "social_care/cp-plan-started.json").read_text())
    data["third_party"] = "sister"
    (event,) = social_care.parse_payload(json.dumps(data), "application/json").events
    assert event.body["third_party"] == "sibling"
    avro_validate(event)

    data["third_party"] = "Gwen Evans"
    with pytest.raises(ValidationError) as err:
        social_care.parse_payload(json.dumps(data), "application/json")
    assert {p.location for p in err.value.problems} == {"/third_party"}
    assert "Gwen" not in str(err.value)
    assert_no_identifiers(err.value)
