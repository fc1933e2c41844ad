"""The audit trail cannot be stopped, flooded or filled with personal data by what a caller sends.

* an id-shaped value or a dated reason dead-letters one record, never the trail;
* a link and its audit record are one transaction;
* requests without a token are counted and logged, not audited;
* an NHS number typed into a URL reaches no audit row;
* a link reason is sealed at rest and opened for IG only;
* the API description is closed in production settings.
"""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from hub.api.app import create_app
from hub.core.settings import Settings
from hub.demo.identifiers import nhs_number
from hub.governance import audit_chain as audit_module
from hub.governance.audit import AuditEntry, AuditLog
from hub.ingest.services import Services
from tests.api.conftest import token_header

NHS = nhs_number(7)
REASON = f"mum rang on 03/04/2015 about {NHS}"


def audit_text(services: Services) -> str:
    """Every audit row as text, to scan for what must not be there."""
    with services.store.engine.connect() as conn:
        rows = conn.execute(sa.text("select * from audit_log")).all()
        dead = conn.execute(sa.text("select * from audit_dead_letters")).all()
    return "\n".join(repr(tuple(r)) for r in [*rows, *dead])


async def enrol(client: httpx.AsyncClient, services: Services, coordinator: str) -> tuple[str, str, dict[str, str]]:
    cc = token_header(services, "coordinator", coordinator)
    hh = (await client.post("/v1/households", json={"coordinator_id": coordinator}, headers=cc)).json()["household_id"]
    child = (await client.post(f"/v1/households/{hh}/members", headers=cc,
                               json={"kind": "child", "relationship": "child"})).json()["member_id"]
    return hh, child, cc


async def test_id_shaped_ids_and_dated_reasons_do_not_stop_the_trail(
        client: httpx.AsyncClient, services: Services) -> None:
    log = AuditLog(services.store)
    hh, child, cc = await enrol(client, services, "cc-guard")
    # a reason with a date and an NHS number: answered, applied and audited, not a 500
    linked = await client.post(f"/v1/households/{hh}/members/{child}/identifiers", headers=cc,
                               json={"system": "nhs-number", "value": NHS, "reason": REASON})
    assert linked.status_code == 202, linked.text
    [link] = log.records(household=hh, actions=["identity_link"])
    assert link.data_ref == linked.json()["event_id"] and link.subject_child == child
    # a sharing record with a ten-digit household id (as the audit job writes them) is dead-lettered ...
    written = log.record_many([
        AuditEntry("share", "hub-sharing", "system", subject_household="9434765919", data_ref="d-1",
                   detail={"recipient": "9434765919"}),
        AuditEntry("withhold", "hub-sharing", "system", subject_household=hh, data_ref="d-2",
                   detail={"reasons": [f"booked for 2015-03-04 ref {NHS}"]}),
    ])
    assert written == [] and log.dead_letter_count() == 2
    # ... and the trail goes on with the next records, for every family
    later = log.record_many([AuditEntry("share", "hub-sharing", "system", subject_household=hh, data_ref="d-3")])
    assert [r.data_ref for r in later] == ["d-3"]
    assert log.verify().ok
    ig = token_header(services, "ig_officer", "ig-guard")
    verify = (await client.get("/v1/audit/verify", headers=ig)).json()
    assert verify["ok"] and verify["dead_letters"] == 2
    await client.hub_app.state.metrics_sampler.run_once()  # type: ignore[attr-defined]  # its background pass
    metrics = (await client.get("/metrics", headers=token_header(services, "monitor", "prom"))).text
    assert "hub_audit_dead_letters 2.0" in metrics
    text = audit_text(services)
    assert NHS not in text and "9434765919" not in text and "03/04/2015" not in text and "2015-03-04" not in text
    # the dead letters say which check failed, on which field
    with services.store.engine.connect() as conn:
        reasons = [r[0] for r in conn.execute(sa.text("select reason from audit_dead_letters order by id"))]
    assert "detail.recipient" in reasons[0] and "detail.reasons[0]" in reasons[1]


async def test_a_link_reason_is_sealed_at_rest_and_opened_for_ig_only(
        client: httpx.AsyncClient, services: Services) -> None:
    hh, child, cc = await enrol(client, services, "cc-seal")
    assert (await client.post(f"/v1/households/{hh}/members/{child}/identifiers", headers=cc,
                              json={"system": "nhs-number", "value": NHS, "reason": REASON})).status_code == 202
    assert "mum rang" not in audit_text(services)
    ig = token_header(services, "ig_officer", "ig-seal")
    records = (await client.get("/v1/audit/records", params={"household_id": hh, "action": "identity_link"},
                                headers=ig)).json()
    assert [r["detail"]["reason"] for r in records] == [REASON]
    assert (await client.get("/v1/audit/records", headers=cc)).status_code == 403
    # erasing the child shreds the key: the record stays, verifiable, and the reason is gone
    erased = await client.post("/v1/erasures", headers=ig, json={
        "member": {"household_id": hh, "member_id": child}, "reason": "family asked for erasure under article 17"})
    assert erased.status_code in (200, 201), erased.text
    records = (await client.get("/v1/audit/records", params={"household_id": hh, "action": "identity_link"},
                                headers=ig)).json()
    assert [r["detail"]["reason"] for r in records] == ["[erased]"]
    assert AuditLog(services.store).verify().ok


async def test_a_link_whose_audit_record_fails_is_not_applied(
        client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    hh, child, cc = await enrol(client, services, "cc-tx")

    def refuse(detail: object, path: str = "detail") -> None:
        raise ValueError(f"audit {path}: refused")

    monkeypatch.setattr(audit_module, "check_detail", refuse)
    with pytest.raises(ValueError, match="refused"):
        await client.post(f"/v1/households/{hh}/members/{child}/identifiers", headers=cc,
                          json={"system": "nhs-number", "value": NHS, "reason": "moved in"})
    with services.store.engine.connect() as conn:
        logged = conn.execute(sa.text("select count(*) from ingest_log where record_type = 'IdentityLinked'")).scalar()
    assert logged == 0
    assert AuditLog(services.store).records(actions=["identity_link"]) == []


async def test_requests_without_a_token_are_counted_not_audited(
        client: httpx.AsyncClient, services: Services) -> None:
    log = AuditLog(services.store)
    before = log.count()
    for i in range(51):
        answer = await client.get(f"/v1/households/hh-{i}/timeline", headers={"Authorization": ""})
        assert answer.status_code == 401
    assert log.count() == before
    metrics = (await client.get("/metrics", headers=token_header(services, "monitor", "prom"))).text
    assert 'hub_requests_refused_total{reason="unauthenticated"} 51.0' in metrics


async def test_an_nhs_number_typed_into_a_url_reaches_no_audit_row(
        client: httpx.AsyncClient, services: Services) -> None:
    hh, _child, cc = await enrol(client, services, "cc-url")
    assert (await client.get(f"/v1/households/{NHS}/timeline", headers=cc)).status_code == 404
    assert (await client.get(f"/v1/households/{hh}/children/{NHS}/team", headers=cc)).status_code in (200, 404)
    assert (await client.get(f"/v1/households/{NHS}/timeline")).status_code in (401, 403, 404)
    ig = token_header(services, "ig_officer", "ig-url") | {"X-Investigation-Reason": f"complaint about {NHS}",
                                                          "X-Purpose": f"checking {NHS}"}
    assert (await client.get(f"/v1/households/{NHS}/timeline", headers=ig)).status_code in (200, 404)
    [ig_read] = [r for r in AuditLog(services.store).records(actions=["read_timeline"]) if r.actor == "ig-url"]
    assert ig_read.purpose == "unspecified" and ig_read.subject_household is None
    assert "sealed" in ig_read.detail["reason"]
    denied = [r for r in AuditLog(services.store).records(actions=["login_denied"]) if r.actor == "cc-url"]
    assert denied and denied[0].data_ref == "GET /v1/households/{household_id}/timeline"
    assert denied[0].subject_household is None
    assert NHS not in audit_text(services)
    assert AuditLog(services.store).verify().ok


def test_the_api_description_is_open_in_the_demo_and_closed_in_production() -> None:
    demo = Settings(kafka_bootstrap="")
    assert demo.api_docs_open
    assert Settings(kafka_bootstrap="127.0.0.1:1", kafka_embedded=True).api_docs_open  # `hub up`, embedded broker
    assert not Settings(kafka_bootstrap="kafka-1.prod:9093").api_docs_open
    assert not Settings(kafka_bootstrap="", database_url="postgresql+psycopg://hub@db/hub").api_docs_open
    assert not Settings(kafka_bootstrap="", api_docs=False).api_docs_open
    assert Settings(kafka_bootstrap="kafka-1.prod:9093", api_docs=True).api_docs_open


async def test_docs_answer_404_in_production_settings(services: Services) -> None:
    production = services.settings.model_copy(update={"kafka_embedded": False})
    for settings, expected in ((production, 404), (services.settings.model_copy(update={"api_docs": True}), 200)):
        app = create_app(Services(settings, services.store, services.catalogue, services.serde,
                                  services.pseudonymise, services.publisher, services.ingest, services.vault))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            for path in ("/docs", "/redoc", "/openapi.json"):
                assert (await c.get(path)).status_code == expected, (path, settings.kafka_bootstrap)
