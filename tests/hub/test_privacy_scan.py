"""Privacy scan: run the seed journeys and every agency fixture through a real `hub up` with debug
logging, then read every log line (hub, workers, broker) and every Kafka key and header on every
topic, and look for the people's NHS numbers, UPNs, local-authority ids, names and dates of birth."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from hub.demo.scenario import build
from hub.kafka.topics import CATALOGUE
from tests.hub.test_stack import HubUp
from tests.support import bearer, wait_until

pytestmark = pytest.mark.broker
FIXTURES = Path(__file__).resolve().parents[1] / "connectors" / "fixtures"


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def personal_values() -> set[str]:
    """Every identifier, name and birth date the inputs carry."""
    values = {i.value for e in build().events for i in [e.subject]}
    text = "\n".join(p.read_text() for p in FIXTURES.rglob("*") if p.is_file())
    values |= set(re.findall(r"\b999\d{7}\b", text))  # synthetic NHS numbers
    for patient in re.findall(r'"resourceType": "Patient".*?"birthDate": "([0-9-]+)"', text, re.S):
        values.add(patient)
    values |= {"Cerys", "CerysExample"}  # the patient's given name in the FHIR fixtures
    return {v for v in values if v}


async def topic_keys_and_headers(bootstrap: str) -> bytes:
    consumer = AIOKafkaConsumer(*[t.name for t in CATALOGUE], bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen = b""
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            for msgs in batch.values():
                for m in msgs:
                    seen += (m.key or b"") + b"\n" + b"".join(k.encode() + v for k, v in m.headers) + b"\n"
    finally:
        await consumer.stop()
    return seen


def enrol_links(base: str, links: list[Any]) -> dict[str, str]:
    """The journey's identity links made through the enrolment routes, as its coordinator would; returns
    each journey household's id in the hub."""
    auth = bearer("coordinator", "cc-1")
    households: dict[str, str] = {}
    children: dict[str, str] = {}
    for link in links:
        home, child = link.body["household_id"], link.body["child_id"]
        if home not in households:
            r = httpx.post(f"{base}/v1/households", json={"coordinator_id": "cc-1"}, headers=auth, timeout=10)
            households[home] = r.json()["household_id"]
        if child not in children:
            r = httpx.post(f"{base}/v1/households/{households[home]}/members", headers=auth, timeout=10,
                           json={"kind": "child", "relationship": "child"})
            children[child] = r.json()["member_id"]
        r = httpx.post(f"{base}/v1/households/{households[home]}/members/{children[child]}/identifiers",
                       json={"system": link.subject.system, "value": link.subject.value, "reason": "enrolment"},
                       headers=auth, timeout=10)
        assert r.status_code == 202, r.text
    return households


def test_no_identifier_name_or_birth_date_in_logs_or_kafka_keys(tmp_path: Path) -> None:
    hub = HubUp(tmp_path)
    hub.env["HUB_LOG_LEVEL"] = "DEBUG"
    hub.start()
    try:
        agency = bearer("agency", "abuhb-pas", agency="7A6")
        journey = build()
        body = [{"record_type": e.record_type, "sector": e.sector, "source_system": e.source_system,
                 "source_id": e.source_id, "source_version": e.source_version, "occurred_at": e.occurred_at.isoformat(),
                 "subject": {"system": e.subject.system, "value": e.subject.value}, "category": e.category,
                 "body": jsonable(e.body)} for e in journey.events if e.record_type != "IdentityLinked"]
        households = enrol_links(hub.base, [e for e in journey.events if e.record_type == "IdentityLinked"])
        assert httpx.post(f"{hub.base}/v1/events", json=body, headers=agency, timeout=60).status_code == 200
        sent = 0
        for path in sorted(FIXTURES.rglob("*")):
            kind = {"health": "health", "social_care": "social-care", "education": "education"}.get(path.parent.name)
            ctype = {".json": "application/fhir+json" if kind == "health" else "application/json", ".xml":
                     "application/fhir+xml", ".csv": "text/csv", ".ndjson": "application/x-ndjson"}.get(path.suffix)
            if kind and ctype:
                r = httpx.post(f"{hub.base}/v1/ingest/{kind}", content=path.read_bytes(),
                               headers=agency | {"Content-Type": ctype}, timeout=60)
                assert r.status_code < 500, (path.name, r.text)
                sent += 1
        assert sent >= 6
        wait_until(lambda: len(hub.timeline(households["household-lewis"])) >= 26, 30, "the journey projected")

        bootstrap = (tmp_path / "data" / "run" / "bootstrap").read_text()
        kafka = asyncio.run(topic_keys_and_headers(bootstrap))
        assert kafka.count(b"ce_subject") >= len(journey.events)
        logs = hub.log.read_text() + "".join(p.read_text(errors="replace") for p in (tmp_path / "data").rglob("*.log"))
        assert "ingest.accepted" in logs and "ingest.batch" in logs and "timeline.read" in logs  # logging ran
        for value in sorted(personal_values()):
            assert value not in logs, f"{value!r} found in a log line"
            assert value.encode() not in kafka, f"{value!r} found in a Kafka key or header"
        # every line the hub and its workers wrote went through the JSON pipeline that scrubs identifiers
        human = [line for line in hub.log.read_text().splitlines() if not line.startswith("{")]
        assert all(json.loads(line) for line in hub.log.read_text().splitlines() if line.startswith("{"))
        assert all("hub up: API on" in line for line in human), human  # only the start-up banner is for people
    finally:
        hub.stop()
