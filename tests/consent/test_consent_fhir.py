"""FHIR R4 Consent import / export (consent/fhir.py)."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta, timezone

import pytest
from consent_factories import CAV, CHILD_ID, PARENT_ID, at
from hypothesis import given
from hypothesis import strategies as st
from test_consent_engine_properties import directives

from consent import (
    Category,
    Directive,
    DirectiveDecision,
    FhirMappingError,
    Grantor,
    Period,
    Provision,
    Purpose,
    Scope,
    Sector,
)
from consent.fhir import directive_to_fhir_dict, from_fhir, to_fhir

P, D = DirectiveDecision.PERMIT, DirectiveDecision.DENY

FULL_SCOPE = Scope(
    agency_ids=frozenset({CAV, "abuhb"}),
    sectors=frozenset({Sector.HEALTH}),
    services=frozenset({"paediatrics"}),
    roles=frozenset({"consultant", "registrar"}),
    professional_ids=frozenset({"pr-1", "pr-2"}),
    categories=frozenset({Category.CLINICAL, Category.MENTAL_HEALTH, Category.CHILD_PROTECTION}),
    purposes=frozenset(Purpose),
    data_period=Period(at(-365), at(0)),
    period=Period(at(0), at(365)),
)


def nested_directive(**kw) -> Directive:
    inner = Provision(
        P,
        Scope(
            agency_ids=frozenset({CAV}),
            sectors=frozenset({Sector.HEALTH}),
            services=frozenset({"paediatrics"}),
            roles=frozenset({"consultant"}),
            professional_ids=frozenset({"pr-1"}),
            categories=frozenset({Category.CLINICAL}),
            purposes=frozenset({Purpose.DIRECT_CARE}),
            data_period=Period(at(-100), at(0)),
            period=Period(at(10), at(20)),
        ),
    )
    exception = Provision(D, Scope(**{**_fields(FULL_SCOPE), "agency_ids": frozenset({CAV})}), (inner,))
    return Directive(
        id="dir-0001",
        child_id=CHILD_ID,
        made_by=PARENT_ID,
        made_by_role=Grantor.PARENT,
        made_at=at(0),
        decision=P,
        scope=FULL_SCOPE,
        exceptions=(exception,),
        **kw,
    )


def _fields(scope: Scope) -> dict:
    return {f.name: getattr(scope, f.name) for f in dataclasses.fields(Scope) if f.init}


def test_round_trip_nested_all_dimensions():
    d = nested_directive()
    data = json.loads(json.dumps(directive_to_fhir_dict(d)))
    assert from_fhir(data) == d


def test_round_trip_withdrawn_and_confirmed():
    d = nested_directive(withdrawn_at=at(50), confirmed_by_young_person_at=at(40))
    data = directive_to_fhir_dict(d)
    assert data["status"] == "inactive"
    assert from_fhir(data) == d
    assert from_fhir(to_fhir(d)) == d


def test_export_shape():
    data = directive_to_fhir_dict(nested_directive())
    assert data["resourceType"] == "Consent"
    assert data["scope"]["coding"][0]["code"] == "patient-privacy"
    assert data["category"][0]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "59284-0",
        "display": "Patient Consent",
    }
    assert data["patient"] == {"reference": f"Patient/{CHILD_ID}"}
    assert data["performer"] == [{"reference": f"RelatedPerson/{PARENT_ID}"}]
    assert data["policyRule"]["coding"][0]["code"] == "OPTIN"
    prov = data["provision"]
    assert prov["type"] == "permit"
    assert {c["code"] for c in prov["purpose"]} == {"TREAT", "COC", "HLEGAL", "THREAT", "FAMRQT"}
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"} in prov[
        "securityLabel"
    ]
    refs = [a["reference"].get("reference") for a in prov["actor"]]
    assert "Organization/cav" in refs and "Practitioner/pr-1" in refs
    assert prov["provision"][0]["type"] == "deny"
    assert prov["provision"][0]["provision"][0]["type"] == "permit"
    # no date of birth, names or other identifiers beyond pseudonyms
    text = json.dumps(data)
    assert "birth" not in text.lower()


def test_young_person_directive_uses_patient_performer():
    d = Directive(
        "dir-yp",
        CHILD_ID,
        CHILD_ID,
        Grantor.YOUNG_PERSON,
        at(0),
        D,
        Scope(sectors=frozenset({Sector.FAMILY})),
    )
    data = directive_to_fhir_dict(d)
    assert data["performer"] == [{"reference": f"Patient/{CHILD_ID}"}]
    assert data["policyRule"]["coding"][0]["code"] == "OPTOUT"
    assert from_fhir(data) == d


def test_corporate_parent_directive_uses_organization_performer():
    d = Directive("dir-la", CHILD_ID, "la-cardiff", Grantor.CORPORATE_PARENT, at(0), P,
                  Scope(agency_ids=frozenset({CAV})))
    data = directive_to_fhir_dict(d)
    assert data["performer"] == [{"reference": "Organization/la-cardiff"}]
    assert from_fhir(data) == d


def test_non_pseudonymous_reference_rejected():
    d = Directive("dir-1", "Jane Smith", PARENT_ID, Grantor.PARENT, at(0), P, Scope())
    with pytest.raises(FhirMappingError, match="pseudonymous"):
        to_fhir(d)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(status="draft"), "active or inactive"),
        (lambda c: (c.pop("identifier"), c.pop("id")), "nor an id"),
        (lambda c: c.update(patient={"identifier": {"system": "urn:x", "value": "1"}}), "NHS number"),
        (lambda c: c.update(patient={"display": "a child"}), "needs a patient"),
        (lambda c: c.update(performer=[{"reference": "Practitioner/x"}]), "performer"),
        (lambda c: c.update(status="inactive"), "withdrawn-at"),
        (lambda c: c["provision"].update(purpose=[{"system": "urn:x", "code": "Y"}]), "purpose"),
        (lambda c: c.update(resourceType="Consent", scope="nonsense"), "valid FHIR"),
    ],
)
def test_import_errors(mutate, message):
    data = directive_to_fhir_dict(nested_directive())
    mutate(data)
    with pytest.raises(FhirMappingError, match=message):
        from_fhir(data)


def test_an_agency_consent_without_the_hub_identifier_is_read_by_its_id():
    data = directive_to_fhir_dict(nested_directive())
    data.pop("identifier")
    data["id"] = "cav-consent-17"
    directive = from_fhir(data)
    assert directive.id == "cav-consent-17"  # as it stands: the caller scopes it to the sending agency
    assert directive.scope == FULL_SCOPE and directive.child_id == CHILD_ID


def test_the_hub_identifier_wins_over_the_id():
    data = directive_to_fhir_dict(nested_directive())
    data["id"] = "agency-own-id"
    assert from_fhir(data).id == "dir-0001"


def test_a_patient_given_by_nhs_number_is_left_to_the_caller_to_resolve():
    data = directive_to_fhir_dict(nested_directive())
    data["patient"] = {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}}
    assert from_fhir(data).child_id == "9434765919"


def test_a_patient_reference_to_another_kind_is_refused():
    data = directive_to_fhir_dict(nested_directive())
    data["patient"] = {"reference": "Group/g1"}
    with pytest.raises(FhirMappingError, match="Patient"):
        from_fhir(data)


def test_naive_datetime_rejected_on_import():
    data = directive_to_fhir_dict(nested_directive())
    data["dateTime"] = "2025-01-06"
    with pytest.raises(FhirMappingError, match="time zone"):
        from_fhir(data)


@given(directives("DRqzx01"), st.integers(-12, 12))
def test_round_trip_random_directives(directive, tz_hours):
    moved = dataclasses.replace(
        directive, made_at=directive.made_at.astimezone(timezone(timedelta(hours=tz_hours)))
    )
    assert from_fhir(json.loads(json.dumps(directive_to_fhir_dict(moved)))) == moved
