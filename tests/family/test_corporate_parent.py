"""A looked-after child's local authority is recorded as corporate parent through enrolment, and from then on
its consent counts like a parent's: the household's coordinator or an IG officer records it, audited, and
the child's sharing is decided again at once. Anyone else is refused and nothing changes. Real app, real
broker, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.core.events import InboundEvent
from hub.db.schema import household_members, share_decisions
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from tests.api.conftest import token_header
from tests.sharing.sharing_support import Feeder

pytestmark = pytest.mark.broker
COORDINATOR = "cc-looked-after"
LA = "W06000022"  # Newport City Council


async def household(client: httpx.AsyncClient, services: Services) -> tuple[str, str, str]:
    cc = token_header(services, "coordinator", COORDINATOR)
    hh = (await client.post("/v1/households", json={"coordinator_id": COORDINATOR}, headers=cc)).json()["household_id"]
    child = (await client.post(f"/v1/households/{hh}/members", headers=cc,
                               json={"kind": "child", "relationship": "child"})).json()["member_id"]
    carer = (await client.post(f"/v1/households/{hh}/members", headers=cc,
                               json={"kind": "adult", "relationship": "foster carer"})).json()["member_id"]
    return hh, child, carer


async def set_la(client: httpx.AsyncClient, services: Services, hh: str, child: str, role: str, subject: str,
                 agency_id: str | None = LA, **claims: str) -> httpx.Response:
    return await client.put(f"/v1/households/{hh}/members/{child}/corporate-parent",
                            json={"agency_id": agency_id}, headers=token_header(services, role, subject, **claims))


def corporate_parent_of(services: Services, member: str) -> str | None:
    M = household_members.c
    with services.store.engine.connect() as conn:
        return conn.execute(sa.select(M.corporate_parent).where(M.member_id == member)).scalar()


def paediatrics_outcome(services: Services, child: str) -> str | None:
    SD = share_decisions.c
    with services.store.engine.connect() as conn:
        return conn.execute(sa.select(SD.outcome).where(
            SD.child_id == child, SD.record_type == "ReportIssued", SD.current.is_(True),
            SD.recipient_service == ABUHB_PAEDS["service_name"])).scalar()


def local_authority_consents(services: Services, hh: str, child: str) -> None:
    """The report journey's events, and the local authority's consent to share health information."""
    now = datetime.now(UTC).replace(microsecond=0)
    j = report_not_sent_journey(now, seed=941, child_id=child, household_id=hh)
    directive = Directive(id=f"consent-{child}-la", child_id=child, made_by=LA, made_by_role=Grantor.CORPORATE_PARENT,
                          made_at=now, decision=DirectiveDecision.PERMIT,
                          scope=Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE})))
    consent = InboundEvent(record_type="ConsentGranted", sector="family", source_system="hub-consent",
                           source_id=directive.id, occurred_at=now, subject=j.subject,
                           body={"directive_id": directive.id, "granted_by": "service",
                                 "fhir_consent": json.dumps(directive_to_fhir_dict(directive))})
    Feeder(services.store, now).feed([*j.before_consent, consent], now)


async def test_the_coordinator_records_the_local_authority_and_its_consent_then_counts(
        client: httpx.AsyncClient, services: Services) -> None:
    hh, child, _ = await household(client, services)
    local_authority_consents(services, hh, child)
    assert paediatrics_outcome(services, child) == "deny"  # not the child's corporate parent on record yet

    r = await set_la(client, services, hh, child, "coordinator", COORDINATOR)

    assert r.status_code == 200, r.text
    assert r.json() == {"member_id": child, "corporate_parent": LA, "status": "recorded"}
    assert corporate_parent_of(services, child) == LA
    assert paediatrics_outcome(services, child) == "permit"  # decided again at once
    (record,) = AuditLog(services.store).records(household=hh, actions=["corporate_parent"])
    assert (record.actor, record.actor_role, record.subject_child) == (COORDINATOR, "coordinator", child)
    assert record.detail == {"agency": LA, "before": ""}
    again = await set_la(client, services, hh, child, "coordinator", COORDINATOR)
    assert again.json()["status"] == "unchanged"
    assert len(AuditLog(services.store).records(household=hh, actions=["corporate_parent"])) == 1


async def test_an_ig_officer_may_record_and_clear_it(client: httpx.AsyncClient, services: Services) -> None:
    hh, child, _ = await household(client, services)
    assert (await set_la(client, services, hh, child, "ig_officer", "ig-1")).status_code == 200
    cleared = await set_la(client, services, hh, child, "ig_officer", "ig-1", agency_id=None)
    assert cleared.status_code == 200 and cleared.json()["status"] == "cleared"
    assert corporate_parent_of(services, child) is None
    assert [r.detail for r in AuditLog(services.store).records(household=hh, actions=["corporate_parent"])] == [
        {"agency": LA, "before": ""}, {"agency": "", "before": LA}]


async def test_nobody_else_may_record_a_corporate_parent_and_nothing_changes(
        client: httpx.AsyncClient, services: Services) -> None:
    hh, child, carer = await household(client, services)

    other = await set_la(client, services, hh, child, "coordinator", "cc-another-caseload")
    parent = await set_la(client, services, hh, child, "parent", "parent-1", household=hh)
    young = await set_la(client, services, hh, child, "young_person", "yp-1", household=hh, member=child)
    agency = await set_la(client, services, hh, child, "agency", "la-system", agency=LA)
    nobody = await client.put(f"/v1/households/{hh}/members/{child}/corporate-parent", json={"agency_id": LA},
                              headers={"Authorization": ""})
    adult = await set_la(client, services, hh, carer, "coordinator", COORDINATOR)

    assert other.status_code == 404, other.text  # another caseload does not learn the household exists
    assert parent.status_code == young.status_code == agency.status_code == 403
    assert nobody.status_code == 401
    assert adult.status_code == 422 and "only a child member can have a corporate parent" in adult.text
    assert corporate_parent_of(services, child) is None and corporate_parent_of(services, carer) is None
    assert not AuditLog(services.store).records(household=hh, actions=["corporate_parent"])
