"""End to end: a real broker, a real worker process and a local HTTP endpoint as the agency's webhook.

The SLT report is withheld, the coordinator can see why and what unblocks it, the family gives
consent through the consents route (the hub's acceptance path), the worker re-decides and the report
reaches the paediatrician's webhook once, signed, with least data; a school without a webhook reads
its inbox and acknowledges; a withdrawal cancels nothing delivered but sends notices to the holders.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.api.problems import hub_error_handler
from hub.api.sharing_routes import sharing_router
from hub.core.errors import HubError
from hub.core.events import InboundEvent
from hub.core.settings import Settings
from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from hub.sharing import delivery
from tests.sharing.sharing_support import Webhook, stored_deliveries
from tests.support import hub_env, spawn, stop, wait_until

pytestmark = pytest.mark.broker
SECRET = "paeds-shared-secret-0123"
SCHOOL = {"agency_id": "W06000022-S9", "agency_name": None, "sector": "education", "service_code": None,
          "service_name": "Test Primary School"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Settings, Webhook]]:
    hook = Webhook()
    hooks_file = tmp_path / "webhooks.json"
    hooks_file.write_text(json.dumps({"7A6": {"url": hook.url, "secret": SECRET}}))
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, data_dir=tmp_path / "data",
                        database_url=f"sqlite:///{tmp_path / 'hub.db'}", pseudonym_key="test-key-0123456789abcdef")
    asyncio.run(ensure_topics(settings))
    Store.open(settings.effective_database_url)
    env = hub_env(kafka_bootstrap=broker.bootstrap, kafka_embedded="true", data_dir=tmp_path / "data",
                  database_url=settings.effective_database_url, worker_name="w0", webhooks_file=hooks_file)
    worker = spawn(["worker"], env, tmp_path / "worker.log")
    yield settings, hook
    stop(worker)
    broker.stop()
    hook.close()


def state(store: Store, service: str, kind: str = "share", report: str | None = None) -> list[dict[str, Any]]:
    out = stored_deliveries(store, deliveries.c.service == service, deliveries.c.kind == kind)
    if report:
        out = [r for r in out if json.loads(r["payload"])["information"].get("report_id") == report]
    return out


def test_withheld_report_reaches_the_paediatrician_once_after_consent(stack: tuple[Settings, Webhook]) -> None:
    settings, hook = stack
    now = datetime.now(UTC).replace(microsecond=0)
    j = report_not_sent_journey(now, seed=4100, child_id="child-e2e", household_id="hh-e2e")
    report = "slt-child-e2e"
    nhs = j.before_consent[0].subject
    school = InboundEvent(record_type="SchoolPlacement", sector="education", source_system="sims", source_id="pl-e2e",
                          occurred_at=now - timedelta(days=30), subject=nhs,
                          body={"school": SCHOOL, "start_date": (now - timedelta(days=30)).date()})

    async def scenario() -> None:
        services = Services.build(settings)
        await services.start()
        app = FastAPI()

        @app.middleware("http")
        async def as_ig(request: Request, call_next: Any) -> Any:  # the API's guard sets the caller; here IG
            request.state.principal = Principal("ig-1", "ig_officer", reason="checking the report journey")
            return await call_next(request)

        app.add_exception_handler(HubError, hub_error_handler)
        app.include_router(sharing_router(services))
        store = services.store
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as api:
                await services.ingest.accept([*j.before_consent, school])
                await asyncio.to_thread(wait_until, lambda: state(store, ABUHB_PAEDS["service_name"], report=report),
                                        60, "the SLT report decided for the paediatrician")
                (withheld,) = state(store, ABUHB_PAEDS["service_name"], report=report)
                assert withheld["state"] == "withheld"
                ready = (await api.get("/v1/households/hh-e2e/readiness")).json()
                (appt,) = ready["children"][0]["appointments"]
                item = next(i for i in appt["reports"] if i["record_type"] == "ReportIssued")
                assert item["status"] == "withheld"
                assert item["unblock"] == f"ask the family for consent to share with {ABUHB_PAEDS['service_name']}"

                directive = Directive(
                    id="consent-e2e-1", child_id="child-e2e", made_by="parent-e2e", made_by_role=Grantor.PARENT,
                    made_at=now, decision=DirectiveDecision.PERMIT,
                    scope=Scope(sectors=frozenset({Sector.HEALTH, Sector.EDUCATION}),
                                purposes=frozenset({Purpose.DIRECT_CARE})))
                resp = await api.post("/v1/households/hh-e2e/children/child-e2e/consents",
                                      json=directive_to_fhir_dict(directive))
                assert resp.status_code == 202, resp.text
                bad = await api.post("/v1/households/hh-e2e/children/child-e2e/consents", json={"resourceType": "x"})
                assert bad.status_code == 422

                def report_at_webhook() -> list[dict[str, Any]]:
                    return [q for q in hook.requests if json.loads(q["body"])["kind"] == "share"
                            and json.loads(q["body"])["information"].get("report_id") == report]

                (req,) = await asyncio.to_thread(wait_until, report_at_webhook, 60, "the report at the webhook")
                assert delivery.verify(SECRET, req["body"], req["headers"], now=req["at"])
                assert req["headers"]["webhook-timestamp"].isdigit()
                (share,) = state(store, ABUHB_PAEDS["service_name"], report=report)
                assert req["headers"]["Idempotency-Key"] == share["delivery_id"]
                body = json.loads(req["body"])
                assert body["child_id"] == "child-e2e" and body["decision"]["rule_id"] == "R5-directive-permit"
                raw = req["body"].decode()
                assert nhs_number(4100) not in raw and "hh-e2e" not in raw and nhs.value not in raw
                await asyncio.to_thread(wait_until, lambda: state(store, ABUHB_PAEDS["service_name"],
                                                                  report=report)[0]["state"] == "delivered", 30,
                                        "delivery receipt")
                (done,) = state(store, ABUHB_PAEDS["service_name"], report=report)
                assert json.loads(done["receipt"])["status"] == 200

                consents = (await api.get("/v1/households/hh-e2e/children/child-e2e/consents")).json()
                assert [d["status"] for d in consents["directives"]] == ["active"]

                # the school has no webhook: its inbox, then an acknowledgement
                def school_items() -> list[dict[str, Any]]:
                    return [r for r in state(store, SCHOOL["service_name"]) if r["state"] == "queued"]

                await asyncio.to_thread(wait_until, school_items, 30, "school shares queued")
                page = (await api.get(f"/v1/agencies/{SCHOOL['agency_id']}/inbox", params={"limit": 1})).json()
                assert len(page["items"]) == 1 and page["next_cursor"]
                rest = (await api.get(f"/v1/agencies/{SCHOOL['agency_id']}/inbox",
                                      params={"cursor": page["next_cursor"]})).json()
                items = page["items"] + rest["items"]
                assert {i["state"] for i in items} == {"delivered"} and len(items) >= 2
                ack = await api.post(f"/v1/agencies/{SCHOOL['agency_id']}/inbox/{items[0]['delivery_id']}/ack")
                assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
                other = await api.post(f"/v1/agencies/7A4/inbox/{items[0]['delivery_id']}/ack")
                assert other.status_code == 404

                copies = (await api.get("/v1/households/hh-e2e/family-copies")).json()["copies"]
                assert any(c["content"]["information"].get("report_id") == report for c in copies)
                shares = (await api.get("/v1/households/hh-e2e/shares")).json()["shares"]
                assert {s["state"] for s in shares} >= {"delivered", "acknowledged", "withheld"}

                # withdrawal: every holder gets one notice
                resp = await api.delete("/v1/households/hh-e2e/children/child-e2e/consents/consent-e2e-1")
                assert resp.status_code == 202

                def notices() -> list[dict[str, Any]]:
                    return [q for q in hook.requests if json.loads(q["body"])["kind"] == "withdrawal_notice"
                            and json.loads(q["body"])["information"].get("report_id") == report]

                await asyncio.to_thread(wait_until, notices, 60, "withdrawal notice at the webhook")
                inbox = (await api.get(f"/v1/agencies/{SCHOOL['agency_id']}/inbox", params={"limit": 100})).json()
                assert any(i["kind"] == "withdrawal_notice" for i in inbox["items"])
                await asyncio.sleep(2)  # nothing more arrives: the report was shared once, noticed once
                assert len(report_at_webhook()) == 1 and len(notices()) == 1
        finally:
            await services.stop()

    asyncio.run(scenario())
