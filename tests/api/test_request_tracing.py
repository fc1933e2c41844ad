"""Tracing through the real broker: one ingest request is one trace, from the API span through the
publish and the record's ``traceparent`` header to the worker's projection, with the ids in the logs."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hub.core.logging import configure_logging
from hub.ingest.services import Services
from hub.stream.batches import Processor
from tests.api.api_helpers import IDENTIFIERS, consume_all, fixture
from tests.support import span_exporter

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return span_exporter()  # type: ignore[no-any-return]


def named(finished: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name.startswith(prefix)]


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


async def test_one_ingest_request_is_one_trace_through_publish_and_projection(
        client: httpx.AsyncClient, services: Services, spans: InMemorySpanExporter) -> None:
    logs = io.StringIO()
    configure_logging(stream=logs)
    r = await client.post("/v1/ingest/social-care", content=fixture("social_care/cp-plan-started.json"),
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    [request] = named(spans.get_finished_spans(), "POST /v1/ingest/social-care")
    [publish] = named(spans.get_finished_spans(), "publish hub.ingest.social-care")
    trace_id = hex_ids(request)[0]
    assert hex_ids(publish)[0] == trace_id and publish.parent is not None
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 200

    # the record on the broker carries the request's trace in W3C Trace Context form
    [message] = await consume_all(services.settings.kafka_bootstrap, "hub.ingest.social-care")
    version, header_trace, header_span, flags = dict(message.headers)["traceparent"].decode().split("-")
    assert (version, header_trace) == ("00", trace_id) and int(flags, 16) & 1  # sampled
    assert header_span == format(publish.parent.span_id, "016x")  # the span the publish ran in

    # the worker continues it when it projects the record
    processor = Processor(services.store, services.serde, services.catalogue, None)
    await processor.handle([(message.topic, message.partition, message.offset, message.key, message.value,
                             list(message.headers))])
    [project] = named(spans.get_finished_spans(), "project")
    assert hex_ids(project)[0] == trace_id and project.parent is not None
    assert format(project.parent.span_id, "016x") == header_span
    assert project.attributes is not None and project.attributes["hub.records"] == 1
    assert processor.processed == 1

    # log lines written inside the request carry its trace and span ids; no identifier is in a span
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    accepted = [line for line in lines if line.get("event") == "ingest.accepted"]
    assert accepted and accepted[0]["trace_id"] == trace_id
    recorded = json.dumps([[s.name, dict(s.attributes or {})] for s in spans.get_finished_spans()])
    for value in IDENTIFIERS:
        assert value not in recorded


async def test_a_callers_traceparent_is_continued_and_a_bad_one_starts_a_new_trace(
        client: httpx.AsyncClient, services: Services, spans: InMemorySpanExporter) -> None:
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    body = fixture("social_care/cp-plan-started.json")
    r = await client.post("/v1/ingest/social-care", content=body, headers={
        "Content-Type": "application/json", "traceparent": f"00-{caller}-00f067aa0ba902b7-01"})
    assert r.status_code == 200
    [request] = named(spans.get_finished_spans(), "POST /v1/ingest/social-care")
    assert hex_ids(request)[0] == caller
    spans.clear()
    bad = await client.post("/v1/ingest/social-care", content=body, headers={
        "Content-Type": "application/json", "traceparent": "00-not-a-trace-01"})
    assert bad.status_code == 200 and bad.json()["results"][0]["status"] == "duplicate"
    [again] = named(spans.get_finished_spans(), "POST /v1/ingest/social-care")
    assert hex_ids(again)[0] != caller and again.parent is None


async def test_a_refused_request_is_traced_by_its_route_with_identifiers_scrubbed(
        client: httpx.AsyncClient, services: Services, spans: InMemorySpanExporter) -> None:
    r = await client.get("/v1/households/hh-1/timeline?child_id=9990000018&since=2015-03-02",
                         headers={"Authorization": ""})
    assert r.status_code == 401
    [span] = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    assert span.name == "GET /v1/households/{household_id}/timeline"
    attributes = dict(span.attributes or {})
    assert attributes["http.response.status_code"] == 401
    assert "9990000018" not in json.dumps(attributes) and "2015-03-02" not in json.dumps(attributes)
    assert not [s for s in spans.get_finished_spans() if "healthz" in s.name]
    assert (await client.get("/healthz")).status_code == 200
    assert not [s for s in spans.get_finished_spans() if "healthz" in s.name]  # probes are not traced
