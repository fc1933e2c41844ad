"""/fhir behaves as a FHIR R4 server: CapabilityStatement, OperationOutcome for every error, JSON or XML,
FHIR Location URLs and R4 resource types only."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa
from api_helpers import fixture
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from lxml import etree

from hub.ingest.services import Services
from tests.api.conftest import token_header

FHIR_JSON, FHIR_XML = "application/fhir+json", "application/fhir+xml"
NS = {"f": "http://hl7.org/fhir"}
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def outcome(r: httpx.Response) -> dict:
    assert r.headers["content-type"].startswith(FHIR_JSON), (r.status_code, r.headers, r.text)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def logged(services: Services) -> int:
    with services.store.engine.connect() as conn:
        return int(conn.execute(sa.text("select count(*) from ingest_log")).scalar_one())


@SQLITE
async def test_metadata_is_a_capability_statement_of_the_fhir_routes(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/metadata", headers={"Authorization": ""})  # public, as FHIR servers publish it
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
    cs = CapabilityStatement.model_validate(r.json())
    assert cs.fhirVersion == "4.0.1" and cs.kind == "instance"
    assert set(cs.format) == {FHIR_JSON, FHIR_XML}
    (rest,) = cs.rest
    created = {res.type for res in rest.resource if [i.code for i in res.interaction] == ["create"]}
    assert {"Appointment", "Encounter", "ServiceRequest", "DocumentReference", "Consent"} <= created
    assert "Patient" not in created  # context only: checked, never recorded
    assert [i.code for i in rest.interaction] == ["transaction", "batch"]
    xml = await client.get("/fhir/metadata?_format=xml")
    assert xml.headers["content-type"].startswith(FHIR_XML)
    root = etree.fromstring(xml.content)
    assert root.tag == "{http://hl7.org/fhir}CapabilityStatement"
    assert root.find("f:fhirVersion", NS).get("value") == "4.0.1"


@SQLITE
async def test_every_refusal_on_fhir_is_an_operation_outcome(client: httpx.AsyncClient, services: Services) -> None:
    body = fixture("health/appointment-booked.json")
    anonymous = await client.post("/fhir/Appointment", content=body,
                                  headers={"content-type": FHIR_JSON, "Authorization": ""})
    assert anonymous.status_code == 401 and outcome(anonymous)["code"] == "login"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    parent = token_header(services, "parent", "parent-1", household="hh-1")
    refused = await client.post("/fhir/Appointment", content=body, headers={"content-type": FHIR_JSON, **parent})
    assert refused.status_code == 403 and outcome(refused)["code"] == "forbidden"
    assert "role parent may not use this route" in outcome(refused)["diagnostics"]
    wrong_type = await client.post("/fhir/Appointment", content=body, headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415 and outcome(wrong_type)["code"] == "not-supported"
    read = await client.get("/fhir/Appointment/1")
    assert read.status_code == 404 and outcome(read)["code"] == "not-found"  # no read interaction here
    deep = await client.post("/fhir/Appointment", content=b"[" * 200 + b"]" * 200, headers={"content-type": FHIR_JSON})
    assert deep.status_code == 422 and outcome(deep)["code"] == "structure"
    assert logged(services) == 0
    # the same refusal elsewhere stays a problem document
    v1 = await client.post("/v1/ingest/health", content=body, headers={"content-type": FHIR_JSON, **parent})
    assert v1.status_code == 403 and v1.headers["content-type"].startswith("application/problem+json")


async def test_a_too_large_fhir_body_is_an_operation_outcome(small_client: httpx.AsyncClient) -> None:
    r = await small_client.post("/fhir/Appointment", content=b"{" + b" " * 4096 + b"}",
                                headers={"content-type": FHIR_JSON})
    assert r.status_code == 413 and outcome(r)["code"] == "too-costly"


@SQLITE
async def test_r4b_only_resource_types_are_refused_naming_the_rule(client: httpx.AsyncClient,
                                                                   services: Services) -> None:
    topic = {"resourceType": "SubscriptionTopic", "url": "http://example.org/topic", "status": "active"}
    r = await client.post("/fhir/SubscriptionTopic", json=topic, headers={"content-type": FHIR_JSON})
    assert r.status_code == 404
    assert outcome(r)["diagnostics"] == ("resource type 'SubscriptionTopic' is not a FHIR R4 (4.0.1) resource type; "
                                         "this server speaks R4 only (rule fhir-r4-resource-types)")
    appointment = json.loads(fixture("health/appointment-booked.json"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": appointment, "request": {"method": "POST", "url": "Appointment"}},
        {"fullUrl": "urn:uuid:2", "resource": topic, "request": {"method": "POST", "url": "SubscriptionTopic"}}]}
    b = await client.post("/fhir", json=bundle, headers={"content-type": FHIR_JSON})
    assert b.status_code == 422 and "rule fhir-r4-resource-types" in outcome(b)["diagnostics"]
    assert [i["expression"] for i in b.json()["issue"]] == [["Bundle.entry[1].resource"]]
    assert logged(services) == 0  # the transaction is all-or-nothing: the good Appointment waits too


@SQLITE
async def test_xml_by_accept_or_format_and_406_when_neither(client: httpx.AsyncClient, services: Services) -> None:
    body = fixture("health/appointment-booked.json")
    r = await client.post("/fhir/Appointment", content=body, headers={"content-type": FHIR_JSON, "Accept": FHIR_XML})
    assert r.status_code == 201 and r.headers["content-type"].startswith(FHIR_XML)
    root = etree.fromstring(r.content)
    assert root.tag == "{http://hl7.org/fhir}OperationOutcome"
    location = r.headers["Location"]
    assert location.startswith("http://hub.test/fhir/Appointment/") and location.endswith("/_history/1")
    refused = await client.post("/fhir/Appointment?_format=xml", content=body, headers={"content-type": "text/csv"})
    assert refused.status_code == 415 and refused.headers["content-type"].startswith(FHIR_XML)
    assert etree.fromstring(refused.content).find("f:issue/f:code", NS).get("value") == "not-supported"
    neither = await client.get("/fhir/metadata?_format=html")
    assert neither.status_code == 406 and outcome(neither)["code"] == "not-supported"
    assert logged(services) == 1


@SQLITE
async def test_a_childs_consents_go_out_as_a_searchset_bundle(client: httpx.AsyncClient, services: Services) -> None:
    from fhir.resources.R4B.bundle import Bundle

    from tests.api.test_agency_binding import enrol, project

    enrol(services)
    project(services, registered=True, performer="parent-1", directive_id="d-1")
    project(services, registered=False, performer="parent-1", directive_id="d-2")
    parent = token_header(services, "parent", "parent-1", household="hh-1", member="parent-1")
    url = "/v1/households/hh-1/children/c-1/consents"
    r = await client.get(url, headers={**parent, "Accept": FHIR_JSON})
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
    bundle = Bundle.model_validate(r.json())
    assert (bundle.type, bundle.total, len(bundle.entry)) == ("searchset", 2, 2)
    by_id = {e.resource.identifier[0].value: e for e in bundle.entry}
    assert {k: e.resource.status for k, e in by_id.items()} == {"7A6:d-1": "active", "7A6:d-2": "proposed"}
    assert all(e.search.mode == "match" and e.resource.__resource_type__ == "Consent" for e in bundle.entry)
    assert by_id["7A6:d-1"].fullUrl == "http://hub.test/fhir/Consent/7A6-d-1"
    xml = await client.get(url + "?_format=xml", headers=parent)
    assert xml.headers["content-type"].startswith(FHIR_XML)
    assert etree.fromstring(xml.content).find("f:type", NS).get("value") == "searchset"
    plain = (await client.get(url, headers=parent)).json()  # without FHIR asked for: the hub's own answer
    assert [d["directive_id"] for d in plain["directives"]] == ["7A6:d-1", "7A6:d-2"]
    # another household's parent learns nothing, in FHIR as in JSON
    stranger = token_header(services, "parent", "parent-9", household="hh-9", member="parent-9")
    refused = await client.get(url, headers={**stranger, "Accept": FHIR_JSON})
    assert refused.status_code == 404 and "7A6" not in refused.text
