"""Ingest bound to the authenticated agency: registered identity, scoped source ids, no hub-internal
records, agency-recorded consent kept as a statement until confirmed (real app, real broker)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.api.app import create_app
from hub.db.schema import audit_log, consent_directives, household_members, households, identity_links
from hub.governance.agencies import AgencyRegistry
from hub.governance.agency_binding import AgencyBinding
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from hub.sharing.directives import record_consent
from tests.api.conftest import ROOT, token_header

FIXTURES = ROOT / "tests" / "connectors" / "fixtures" / "health"
NHS_A, NHS_B = "9990000026", "9990000034"


def appointment(resource_id: str, nhs: str = NHS_A, ods: str = "7A6") -> dict[str, Any]:
    res = json.loads((FIXTURES / "appointment-booked.json").read_text())
    res["id"] = resource_id
    res["participant"][0]["actor"]["identifier"]["value"] = nhs
    res["participant"][1]["actor"]["identifier"]["value"] = ods
    return res


def service_request(resource_id: str) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": resource_id, "status": "active", "intent": "order",
            "meta": {"versionId": "1", "lastUpdated": "2024-03-01T09:15:00+00:00"},
            "code": {"text": "Referral to paediatric therapy"}, "authoredOn": "2024-03-01T09:15:00+00:00",
            "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS_A}},
            "performer": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "7A6"},
                           "display": "Aneurin Bevan University Health Board"}]}


def log_rows(services: Services) -> list[Any]:
    with services.store.engine.connect() as conn:
        return conn.execute(sa.text("select event_id, source_system, source_id, key from ingest_log")).all()


def refusals(services: Services) -> list[dict[str, Any]]:
    with services.store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.detail).where(audit_log.c.action == "ingest_refused")).all()
    return [json.loads(r.detail) for r in rows]


def registry(tmp_path: Path, services: Services, **agency: Any) -> None:
    entry = {"id": "7A6", "name": "Aneurin Bevan UHB", "sectors": ["health"], "source_systems": ["abuhb-pas"],
             **agency}
    path = tmp_path / "agencies.json"
    path.write_text(json.dumps({"agencies": [entry]}))
    services.settings.agencies_file = path


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_agency_cannot_link_a_child_into_a_household(client: httpx.AsyncClient,
                                                              services: Services) -> None:
    link = {"record_type": "IdentityLinked", "sector": "hub", "source_system": "hub-enrolment",
            "source_id": "m-1:subject", "occurred_at": "2024-03-01T09:00:00Z",
            "subject": {"system": "nhs-number", "value": NHS_A},
            "body": {"action": "link", "child_id": "c-1", "household_id": "hh-1", "identifier_system": "nhs-number"}}
    r = await client.post("/v1/events", json=[link])
    assert r.status_code == 403, r.text
    assert "record type IdentityLinked is hub-internal" in r.json()["detail"]
    assert NHS_A not in r.text
    assert log_rows(services) == []  # nothing accepted, nothing linked
    with services.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(identity_links)).scalar() == 0
    assert refusals(services) == [{"agency": "7A6", "rule": "internal_record"}]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_two_resource_types_with_one_id_are_two_records(client: httpx.AsyncClient,
                                                              services: Services) -> None:
    r1 = await client.post("/fhir/ServiceRequest", json=service_request("4242"),
                           headers={"content-type": "application/fhir+json"})
    r2 = await client.post("/fhir/Appointment", json=appointment("4242"),
                           headers={"content-type": "application/fhir+json"})
    assert (r1.status_code, r2.status_code) == (201, 201), (r1.text, r2.text)
    rows = log_rows(services)
    assert sorted(r.source_id for r in rows) == ["Appointment/4242", "ServiceRequest/4242"]
    assert len({r.event_id for r in rows}) == 2
    assert {r.source_system for r in rows} == {"7A6/abuhb-pas"}  # the agency's, not the mapping's


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_two_trusts_sending_one_resource_id_keep_their_own_children(client: httpx.AsyncClient,
                                                                          services: Services) -> None:
    other = token_header(services, "agency", "cav-pas", agency="7A4")
    r1 = await client.post("/fhir/Appointment", json=appointment("4242", NHS_A),
                           headers={"content-type": "application/fhir+json"})
    second = appointment("4242", NHS_B, ods="7A4")
    second["meta"]["versionId"] = "2"
    r2 = await client.post("/fhir/Appointment", json=second,
                           headers={"content-type": "application/fhir+json", **other})
    assert (r1.status_code, r2.status_code) == (201, 201), (r1.text, r2.text)
    rows = log_rows(services)
    assert len(rows) == 2 and len({r.event_id for r in rows}) == 2  # no version of the other's record
    assert len({r.key for r in rows}) == 2  # each stays its own child's
    assert {r.source_system for r in rows} == {"7A6/abuhb-pas", "7A4/cav-pas"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_payload_naming_another_agency_is_refused_and_audited(
        client: httpx.AsyncClient, services: Services, tmp_path: Path) -> None:
    registry(tmp_path, services)
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test",
                                 headers=token_header(services, "agency", "abuhb-pas", agency="7A6")) as c:
        fhir = {"content-type": "application/fhir+json"}
        r = await c.post("/fhir/Appointment", json=appointment("a-1", ods="7A4"), headers=fhir)
        assert r.status_code == 403, r.text
        assert "names organisation '7A4'" in r.text
        sourced = appointment("a-2")
        sourced["meta"]["source"] = "urn:cav:cav-pas"
        r = await c.post("/v1/ingest/health", json=sourced, headers=fhir)
        assert r.status_code == 403 and "meta.source" in r.json()["detail"], r.text
        event = {"record_type": "AppointmentCancelled", "sector": "health", "source_system": "cav-pas",
                 "source_id": "x", "occurred_at": "2024-03-01T09:00:00Z",
                 "subject": {"system": "nhs-number", "value": NHS_A}, "body": {}}
        r = await c.post("/v1/events", json=[event])
        assert r.status_code in (403, 422), r.text
        stranger = token_header(services, "agency", "cav-pas", agency="7A4")
        r = await c.post("/fhir/Appointment", json=appointment("a-3", ods="7A4"), headers={**fhir, **stranger})
        assert r.status_code == 403
        assert "agency 7A4 is not registered; ask an administrator to add it to HUB_AGENCIES_FILE" in r.text
        ok = await c.post("/fhir/Appointment", json=appointment("a-4"), headers=fhir)
        assert ok.status_code == 201, ok.text
        admin = token_header(services, "admin", "admin-1")
        listed = (await c.get("/v1/agencies", headers=admin)).json()
        assert listed["configured"] and listed["agencies"][0]["id"] == "7A6"
        assert (await c.get("/v1/agencies")).status_code == 403
    assert [r.source_id for r in log_rows(services)] == ["Appointment/a-4"]  # nothing refused was kept
    rules = [d["rule"] for d in refusals(services)]
    assert rules[:2] == ["organisation", "meta_source"] and "unregistered" in rules


MADE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def agency_consent(performer: str, directive_id: str) -> str:
    d = Directive(id=directive_id, child_id="c-1", made_by=performer, made_by_role=Grantor.PARENT, made_at=MADE,
                  decision=DirectiveDecision.PERMIT,
                  scope=Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE})))
    return json.dumps(directive_to_fhir_dict(d))


def enrol(services: Services) -> None:
    now = datetime.now(UTC)
    with services.store.engine.begin() as conn:
        conn.execute(households.insert(), [{"household_id": "hh-1", "created_by": "cc-1", "created_at": now}])
        conn.execute(household_members.insert(), [
            {"member_id": "c-1", "household_id": "hh-1", "kind": "child", "relationship": "child",
             "parental_responsibility": False, "created_at": now},
            {"member_id": "parent-1", "household_id": "hh-1", "kind": "adult", "relationship": "mother",
             "parental_responsibility": True, "created_at": now}])


def project(services: Services, registered: bool, performer: str, directive_id: str, agency: str = "7A6") -> str:
    """An agency's ConsentGranted as the ingest binding stamps it, projected for child c-1; its status."""
    reg = AgencyRegistry(None).registration(agency, "abuhb-pas")
    reg = type(reg)(**{**reg.__dict__, "records_consent": registered})
    binding = AgencyBinding(reg, AuditLog(services.store), "abuhb-pas", "/fhir/Consent")
    from hub.core.events import InboundEvent, SubjectRef
    event = binding.bind(InboundEvent(
        record_type="ConsentGranted", sector="health", source_system="uk-core-fhir",
        source_id=f"Consent/{directive_id}",
        occurred_at=MADE, subject=SubjectRef("nhs-number", NHS_A),
        body={"directive_id": directive_id, "granted_by": "family", "fhir_consent": agency_consent(performer,
                                                                                                  directive_id)}))
    record = {"meta": {"event_id": f"e-{directive_id}", "source_system": event.source_system, "source_version": 1,
                       "subject": "s-1", "occurred_at": MADE, "status": "active"}, **copy.deepcopy(event.body)}
    with services.store.engine.begin() as conn:
        record_consent(conn, "joined", "ConsentGranted", ("hh-1", "c-1"), record, datetime.now(UTC))
        return str(conn.execute(sa.select(consent_directives.c.status).where(
            consent_directives.c.directive_id == f"{reg.agency_id}:{directive_id}")).scalar())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_agency_recorded_consent_waits_for_confirmation(client: httpx.AsyncClient,
                                                              services: Services) -> None:
    enrol(services)
    assert project(services, registered=False, performer="parent-1", directive_id="d-1") == "pending_confirmation"
    assert project(services, registered=True, performer="stranger", directive_id="d-2") == "pending_confirmation"
    assert project(services, registered=True, performer="parent-1", directive_id="d-3") == "active"
    with services.store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.detail).where(audit_log.c.action == "consent_recorded")).all()
    assert [json.loads(r.detail)["agency"] for r in rows] == ["7A6", "7A6", "7A6"]
    parent = token_header(services, "parent", "parent-1", household="hh-1", member="parent-1")
    listed = (await client.get("/v1/households/hh-1/children/c-1/consents", headers=parent)).json()
    states = {d["directive_id"]: d["status"] for d in listed["directives"]}
    assert states == {"7A6:d-1": "pending_confirmation", "7A6:d-2": "pending_confirmation", "7A6:d-3": "active"}
    agency = token_header(services, "agency", "abuhb-pas", agency="7A6")
    url = "/v1/households/hh-1/children/c-1/consents/7A6:d-1/confirm"
    assert (await client.post(url, headers=agency)).status_code == 403
    r = await client.post(url, headers=parent)
    assert r.status_code == 202, r.text
    r = await client.post("/v1/households/hh-1/children/c-1/consents/7A6:d-3/confirm", headers=parent)
    assert r.status_code == 422 and "pending confirmation" in r.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_two_agencies_consent_ids_are_two_directives(client: httpx.AsyncClient, services: Services) -> None:
    """Two agencies' ``Consent/1`` name two directives: one never overwrites or withdraws the other's."""
    enrol(services)
    assert project(services, registered=True, performer="parent-1", directive_id="1", agency="7A6") == "active"
    assert project(services, registered=False, performer="parent-1", directive_id="1",
                   agency="7A3") == "pending_confirmation"
    with services.store.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(consent_directives.c.directive_id, consent_directives.c.status)).all())
    assert rows == {"7A6:1": "active", "7A3:1": "pending_confirmation"}
