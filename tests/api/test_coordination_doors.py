"""The coordination doors probed from outside: hostile referral bodies, reused Idempotency-Keys, odd path ids,
odd KPI parameters, and every caller who should be refused. Each refusal is a 4xx problem naming the field,
never a 500, never quoting what was sent, and leaves nothing recorded (every table's rows counted before and
after; a refused caller adds only its audited refusal). Free text a coordinator writes (the reason) reaches
the services it is for, never a log line or the audit trail."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hub.api.app import create_app
from hub.core.settings import Settings
from hub.db import schema
from hub.demo.identifiers import nhs_number
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from hub.sharing import referrals
from tests.api.conftest import ROOT, token_header
from tests.api.test_timeline_routes import PHYSIO, SLT, project_log

pytestmark = pytest.mark.broker
CARE = {"agency_id": "W06000022", "sector": "social_care", "service_name": "Complex needs care coordination"}
GOOD = {"referrer_service": CARE, "services": [SLT, PHYSIO], "reason": "feeding and development"}
#: free text no answer, log line or audit row may ever repeat
SECRET = "Jane Doe-Marker"
NEEDS = "needs agency_id, service_name and a sector (health, social_care, education)"
CONTROL = "must not hold control characters or lone surrogates"
Hub = tuple[httpx.AsyncClient, Services]


@pytest.fixture
async def hub(db_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    """The real app over SQLite and PostgreSQL (whose text columns refuse NUL and overlong values)."""
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True,
                        database_url=db_url, data_dir=tmp_path / "data",
                        schema_dir=ROOT / "schemas", pseudonym_key="k" * 32)  # type: ignore[arg-type]
    await ensure_topics(settings)
    services = Services.build(settings)
    await services.start()
    app = create_app(services)
    # a 500 is answered, not raised, so a door that breaks shows as the status the caller would see
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://hub.test") as c:
        yield c, services
    await services.stop()
    services.store.engine.dispose()
    broker.stop()


async def enrol(client: httpx.AsyncClient, services: Services, coordinator: str, n: int) -> dict[str, str]:
    """A household on ``coordinator``'s caseload: a child (NHS number ``n``, linked) and a mother."""
    cc = token_header(services, "coordinator", coordinator)
    hh = (await client.post("/v1/households", json={"coordinator_id": coordinator}, headers=cc)).json()["household_id"]
    child = (await client.post(f"/v1/households/{hh}/members", headers=cc, json={
        "kind": "child", "relationship": "child", "date_of_birth": "2019-03-04"})).json()["member_id"]
    mother = (await client.post(f"/v1/households/{hh}/members", headers=cc, json={
        "kind": "adult", "relationship": "mother", "parental_responsibility": True})).json()["member_id"]
    r = await client.post(f"/v1/households/{hh}/members/{child}/identifiers", headers=cc,
                          json={"system": "nhs-number", "value": nhs_number(n)})
    assert r.status_code == 202, r.text
    await asyncio.to_thread(project_log, services)
    return {"household": hh, "child": child, "mother": mother, "url": f"/v1/households/{hh}/children/{child}/referrals"}


def counts(services: Services) -> dict[str, int]:
    """Rows in every table (the ingest log is the outbox)."""
    with services.store.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in schema.metadata.sorted_tables}


def audit_rows(services: Services) -> str:
    with services.store.engine.connect() as conn:
        return "\n".join(str(tuple(r)) for r in conn.execute(sa.select(schema.audit_log)).all())


def refusal(r: httpx.Response, status: int, pointer: str | None, words: str) -> None:
    """A problem document with ``status`` whose error at ``pointer`` (or detail, when None) says ``words``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    if pointer is None:
        assert words in body["detail"], body
    else:
        assert {"pointer": pointer, "detail": words} in body["errors"] or any(
            e["pointer"] == pointer and words in e["detail"] for e in body["errors"]), body


#: (what is wrong, the body, where the problem is said to be, what it says)
BAD_BODIES: list[tuple[str, Any, str, str]] = [
    ("services as a string", {**GOOD, "services": "SLT"}, "/services", "services must name at least one service"),
    ("services as an object", {**GOOD, "services": SLT}, "/services", "services must name at least one service"),
    ("services as numbers", {**GOOD, "services": [1, 2]}, "/services/1", f"services[1] {NEEDS}"),
    ("services nested", {**GOOD, "services": [[SLT]]}, "/services/0", f"services[0] {NEEDS}"),
    ("thousands of services", {**GOOD, "services": [{**SLT, "service_name": f"s{i}"} for i in range(3000)]},
     "/services", f"services may name at most {referrals.MAX_SERVICES} services"),
    ("no service", {**GOOD, "services": []}, "/services", "services must name at least one service"),
    ("a service twice", {**GOOD, "services": [SLT, PHYSIO, SLT]}, "/services", "a service is named twice"),
    ("an agency id as a number", {**GOOD, "services": [{**SLT, "agency_id": 7}]}, "/services/0/agency_id",
     "services[0].agency_id must be a string"),
    ("a service name as a list", {**GOOD, "services": [{**SLT, "service_name": [SECRET]}]},
     "/services/0/service_name", "services[0].service_name must be a string"),
    ("a service name as an object", {**GOOD, "services": [PHYSIO, {**SLT, "service_name": {"a": SECRET}}]},
     "/services/1/service_name", "services[1].service_name must be a string"),
    ("an agency name as a number", {**GOOD, "services": [{**SLT, "agency_name": 5}]}, "/services/0/agency_name",
     "services[0].agency_name must be a string"),
    ("a sector as a list", {**GOOD, "services": [{**SLT, "sector": ["health"]}]}, "/services/0",
     f"services[0] {NEEDS}"),
    ("a field a service has not", {**GOOD, "services": [{**SLT, SECRET: nhs_number(71)}]}, "/services/0",
     "services[0]: a field that is not part of this resource or request (its name is not repeated)"),
    ("a very long service name", {**GOOD, "services": [{**SLT, "service_name": "x" * 100_000}]},
     "/services/0/service_name", "services[0].service_name must be at most 200 characters"),
    ("a NUL in a service name", {**GOOD, "services": [{**SLT, "service_name": f"{SECRET}\x00"}]},
     "/services/0/service_name", f"services[0].service_name {CONTROL}"),
    ("an NHS number as a service name", {**GOOD, "services": [{**SLT, "service_name": nhs_number(71)}]},
     "/services/0/service_name", "services[0].service_name must not look like an NHS number, UPN or date of birth"),
    ("a date of birth as a service code", {**GOOD, "services": [{**SLT, "service_code": "2019-03-04"}]},
     "/services/0/service_code", "services[0].service_code must not look like an NHS number, UPN or date of birth"),
    ("a blank service name", {**GOOD, "services": [{**SLT, "service_name": "   "}]}, "/services/0/service_name",
     "services[0].service_name must not be blank"),
    ("a referrer as a string", {**GOOD, "referrer_service": SECRET}, "/referrer_service", f"referrer_service {NEEDS}"),
    ("no referrer", {"services": [SLT]}, "/referrer_service", f"referrer_service {NEEDS}"),
    ("an escape sequence in the referrer", {**GOOD, "referrer_service": {**CARE, "service_name": "a\x1b[31mb"}},
     "/referrer_service/service_name", f"referrer_service.service_name {CONTROL}"),
    ("a very long reason", {**GOOD, "reason": SECRET * 20_000}, "/reason",
     f"reason must be at most {referrals.MAX_REASON} characters"),
    ("a NUL in the reason", {**GOOD, "reason": f"{SECRET}\x00"}, "/reason", f"reason {CONTROL}"),
    ("a bell in the reason", {**GOOD, "reason": f"{SECRET}\x07"}, "/reason", f"reason {CONTROL}"),
    ("a reason as a number", {**GOOD, "reason": 5}, "/reason", "reason must be a string"),
    ("a reason as an object", {**GOOD, "reason": {"name": SECRET}}, "/reason", "reason must be a string"),
    ("a priority outside the set", {**GOOD, "priority": SECRET}, "/priority",
     "priority must be one of routine, urgent, asap, stat"),
    ("a priority as a number", {**GOOD, "priority": 1}, "/priority",
     "priority must be one of routine, urgent, asap, stat"),
    ("a field the body has not", {**GOOD, "child_name": SECRET}, "/",
     "a field that is not part of this resource or request (its name is not repeated)"),
    ("a list, not an object", [GOOD], "/", "Input should be a valid dictionary"),
    ("a string, not an object", SECRET, "/", "Input should be a valid dictionary"),
]


async def test_a_hostile_referral_body_is_refused_field_by_field_and_nothing_is_recorded(hub: Hub) -> None:
    client, services = hub
    fam = await enrol(client, services, "cc-doors", 71)
    cc = token_header(services, "coordinator", "cc-doors")
    before = counts(services)
    for what, body, pointer, words in BAD_BODIES:
        r = await client.post(fam["url"], headers=cc, json=body)
        refusal(r, 422, pointer, words)
        assert SECRET not in r.text and nhs_number(71) not in r.text, what
        assert counts(services) == before, what
    raw = {
        "a lone surrogate in the reason": (json.dumps({**GOOD, "reason": "\ud800"}).encode(), "/reason"),
        "a lone surrogate in a service": (
            json.dumps({**GOOD, "services": [{**SLT, "service_name": "\udfff"}]}).encode(), "/services/0/service_name"),
    }
    for what, (content, pointer) in raw.items():
        r = await client.post(fam["url"], headers={**cc, "Content-Type": "application/json"}, content=content)
        refusal(r, 422, pointer, CONTROL)
        assert "codec" not in r.text and "\\ud" not in r.text, what  # not the encoder's words, quoting it
        assert counts(services) == before, what
    not_json = await client.post(fam["url"], headers={**cc, "Content-Type": "application/json"}, content=b"{nope")
    refusal(not_json, 422, None, "1 problem(s) in the request")
    assert counts(services) == before

    # the doors are not shut on good referrals: twenty services, a priority and a reason over several lines
    most = [{**SLT, "service_name": f"Service {i}"} for i in range(referrals.MAX_SERVICES)]
    ok = await client.post(fam["url"], headers=cc, json={**GOOD, "services": most, "priority": "urgent",
                                                          "reason": "feeding\nand development\tsince March"})
    assert ok.status_code == 202 and ok.json()["parts"] == referrals.MAX_SERVICES, ok.text


async def test_an_idempotency_key_answers_its_own_referral_and_refuses_another(hub: Hub) -> None:
    client, services = hub
    fam = await enrol(client, services, "cc-doors", 71)
    cc = {**token_header(services, "coordinator", "cc-doors"), "Idempotency-Key": "ref-1"}
    made = await client.post(fam["url"], headers=cc, json=GOOD)
    assert made.status_code == 202 and made.json()["status"] == "accepted", made.text
    before = counts(services)
    again = await client.post(fam["url"], headers=cc, json=GOOD)
    assert again.json() == {**made.json(), "status": "duplicate"}
    assert counts(services) == before

    for what, body in {"fewer services": {**GOOD, "services": [SLT]},
                       "more services": {**GOOD, "services": [SLT, PHYSIO, {**SLT, "service_name": "OT"}]},
                       "other services": {**GOOD, "services": [SLT, {**PHYSIO, "service_name": "OT"}]},
                       "another reason": {**GOOD, "reason": SECRET},
                       "a priority": {**GOOD, "priority": "urgent"}}.items():
        r = await client.post(fam["url"], headers=cc, json=body)
        refusal(r, 409, "/", referrals.KEY_REUSED)
        assert SECRET not in r.text, what
        assert counts(services) == before, what
    await asyncio.to_thread(project_log, services)
    (only,) = (await client.get(f"/v1/households/{fam['household']}/referrals", headers=cc)).json()["referrals"]
    assert only["referral_id"] == made.json()["referral_id"] and len(only["services"]) == 2
    assert only["reason"] == GOOD["reason"]


async def test_the_reason_reaches_the_referral_and_never_a_log_line_or_the_audit_trail(
        hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    client, services = hub
    caplog.set_level(logging.DEBUG)
    fam = await enrol(client, services, "cc-doors", 71)
    cc = token_header(services, "coordinator", "cc-doors")
    reason = f"{SECRET}, NHS {nhs_number(71)}, born 2019-03-04: feeding"
    made = await client.post(fam["url"], headers=cc, json={**GOOD, "reason": reason})
    assert made.status_code == 202, made.text
    refused = await client.post(fam["url"], headers=cc, json={**GOOD, "reason": reason, "priority": SECRET})
    assert refused.status_code == 422 and SECRET not in refused.text
    other = await client.post(fam["url"], headers=token_header(services, "coordinator", "cc-else"),
                              json={**GOOD, "reason": reason})
    assert other.status_code == 404
    await asyncio.to_thread(project_log, services)
    one = await client.get(f"/v1/households/{fam['household']}/referrals/{made.json()['referral_id']}", headers=cc)
    assert one.json()["reason"] == reason  # the coordinator reads what was written

    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    trail = audit_rows(services)
    for text in (SECRET, nhs_number(71), "2019-03-04"):
        assert text not in logged, text
        assert text not in trail, text


ROUTES = ("POST {url}", "GET /v1/households/{hh}/referrals", "GET /v1/households/{hh}/referrals/{rid}",
          "GET /v1/households/{hh}/clocks", "GET /v1/households/{hh}/alerts",
          "POST /v1/households/{hh}/alerts/1/acknowledge",
          "GET /v1/kpis?start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z")


async def test_every_coordination_door_refuses_whoever_it_is_not_for(hub: Hub) -> None:
    client, services = hub
    fam = await enrol(client, services, "cc-doors", 71)
    theirs = await enrol(client, services, "cc-other", 72)
    hh, cc = fam["household"], token_header(services, "coordinator", "cc-doors")
    rid = (await client.post(fam["url"], headers=cc, json=GOOD)).json()["referral_id"]
    await asyncio.to_thread(project_log, services)
    callers = {
        "nobody": ({}, 401, "a bearer token is required"),
        "another household's coordinator": (token_header(services, "coordinator", "cc-other"), 404,
                                            "no such household"),
        "an agency": (token_header(services, "agency", "abuhb-pas", agency="7A6"), 403,
                      "role agency may not use this route"),
        "a parent of the household": (token_header(services, "parent", "p-1", household=hh, member=fam["mother"]),
                                      403, "role parent may not use this route"),
        "the young person": (token_header(services, "young_person", "yp-1", household=hh, member=fam["child"]),
                             403, "role young_person may not use this route"),
    }
    for who, (headers, status, words) in callers.items():
        for route in ROUTES:
            method, path = route.format(url=fam["url"], hh=hh, rid=rid).split(" ")
            if who == "another household's coordinator" and path.startswith("/v1/kpis"):
                status, words = 403, "role coordinator may not use this route"
            before = counts(services)
            r = await client.request(method, path, headers=headers, json=GOOD if method == "POST" else None)
            refusal(r, status, None, words)
            after = counts(services)
            assert {k: after[k] - before[k] for k in after if after[k] != before[k]} in ({}, {"audit_log": 1}), \
                (who, route)
            assert "feeding" not in r.text and SLT["service_name"] not in r.text, (who, route)
    commissioner = token_header(services, "commissioner", "devon-commissioning")
    for route in ROUTES[:-1]:  # a commissioner reads the KPIs and nothing about a household
        method, path = route.format(url=fam["url"], hh=hh, rid=rid).split(" ")
        r = await client.request(method, path, headers=commissioner, json=GOOD if method == "POST" else None)
        refusal(r, 403, None, "role commissioner may not use this route")
    assert "feeding" not in audit_rows(services)

    # a coordinator of their own household asking after another household's referral, or child
    occ = token_header(services, "coordinator", "cc-other")
    refusal(await client.get(f"/v1/households/{theirs['household']}/referrals/{rid}", headers=occ), 404, None,
            "no such referral for this household")
    before = counts(services)
    r = await client.post(f"/v1/households/{theirs['household']}/children/{fam['child']}/referrals", headers=occ,
                          json=GOOD)
    refusal(r, 404, None, "no such child in this household")
    assert counts(services) == before


async def test_odd_path_ids_are_not_found_never_a_500(hub: Hub) -> None:
    client, services = hub
    fam = await enrol(client, services, "cc-doors", 71)
    hh, cc = fam["household"], token_header(services, "coordinator", "cc-doors")
    before = counts(services)
    # "²" and Arabic-Indic digits pass str.isdigit; 30 nines overflow the database's integer
    for alert_id in ("%C2%B2", "%D9%A1%D9%A2", "9" * 30, "9" * 5000, "-1", "1.0", "0"):
        r = await client.post(f"/v1/households/{hh}/alerts/{alert_id}/acknowledge", headers=cc)
        refusal(r, 404, None, "no such alert for this household")
    for rid in ("x" * 5000, "%F0%9F%98%80", "referral-%25", nhs_number(71)):
        r = await client.get(f"/v1/households/{hh}/referrals/{rid}", headers=cc)
        refusal(r, 404, None, "no such referral for this household")
        assert nhs_number(71) not in r.text
    for child in ("c" * 5000, "%E2%80%AE", nhs_number(71)):
        r = await client.post(f"/v1/households/{hh}/children/{child}/referrals", headers=cc, json=GOOD)
        refusal(r, 404, None, "no such child in this household")
        assert nhs_number(71) not in r.text
    assert counts(services) == before

    # a NUL (which PostgreSQL text cannot hold) or another control character in an id, for every caller,
    # even one the route refuses: their refusal's audit looked the id up too
    callers = (cc, token_header(services, "ig_officer", "ig-1"),
               token_header(services, "parent", "p-1", household=hh, member=fam["mother"]),
               token_header(services, "commissioner", "devon-commissioning"))
    odd = (f"POST /v1/households/{hh}/children/%00/referrals", "POST /v1/households/%00/children/x/referrals",
           "GET /v1/households/%00/referrals", f"GET /v1/households/{hh}/referrals/%00",
           "GET /v1/households/%1B/clocks", "GET /v1/households/%00/alerts",
           "POST /v1/households/%00/alerts/1/acknowledge", f"POST /v1/households/{hh}/alerts/%00/acknowledge",
           "GET /v1/households/%C2%85/clocks")
    for headers in callers:
        for route in odd:
            method, path = route.split(" ")
            r = await client.request(method, path, headers=headers, json=GOOD if method == "POST" else None)
            refusal(r, 404, None, "no such resource")
    assert counts(services) == before  # not even an audited refusal: no such door


async def test_kpi_parameters_are_refused_by_name_and_never_said_back_unless_plain(hub: Hub) -> None:
    client, services = hub
    com = token_header(services, "commissioner", "devon-commissioning")
    month = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    before = counts(services)

    async def kpis(**params: str) -> httpx.Response:
        return await client.get("/v1/kpis", params={**month, **params}, headers=com)

    refusal(await kpis(start=month["end"], end=month["start"]), 422, "/end", "end must be after start")
    refusal(await kpis(end=month["start"]), 422, "/end", "end must be after start")
    refusal(await kpis(format="xml"), 422, "/format", "Input should be 'json' or 'csv'")
    refusal(await kpis(by="nhs_number"), 422, "/by", "Input should be 'service', 'agency' or 'household_type'")
    refusal(await kpis(start="yesterday"), 422, "/start", "Input should be a valid datetime")
    for kind in (f"{SECRET}\x00", "x" * 5000, nhs_number(71), "2019-03-04", "<script>"):
        r = await kpis(household_type=kind)
        refusal(r, 422, "/household_type", "unknown household type (known: looked_after_child")
        assert kind not in r.text and "xxxxxxxxxx" not in r.text and SECRET not in r.text
    plain = await kpis(household_type="single mum")  # a plain mistake is said back, to be put right
    refusal(plain, 422, "/household_type", "unknown household type 'single mum' (known:")

    naive = await kpis(start="2026-01-01T00:00:00", end="2026-02-01T00:00:00")  # no offset: UTC
    assert naive.status_code == 200 and naive.json()["period"] == {"start": "2026-01-01T00:00:00+00:00",
                                                                   "end": "2026-02-01T00:00:00+00:00"}
    for start, end in (("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"), ("1", "99999999999999")):
        assert (await kpis(start=start, end=end)).status_code == 200  # the widest period is answered, not a 500
    assert counts(services) == before
