"""A share's delivery continues the trace of the request that sent the information (hub/sharing/delivery.py):
the trace context is read from the ingest log's headers, the deliverer's span is its child."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from hub.core.tracing import tracer
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.sharing import delivery
from tests.sharing.sharing_support import Feeder, Webhook, deliver
from tests.support import span_exporter

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def hook() -> Iterator[Webhook]:
    endpoint = Webhook()
    yield endpoint
    endpoint.close()


def test_a_webhook_delivery_continues_the_senders_trace(db_url: str, hook: Webhook) -> None:
    store = Store.open(db_url)
    spans = span_exporter()
    now = datetime.now(UTC).replace(microsecond=0)
    j = report_not_sent_journey(now, seed=911, child_id="c-911", household_id="hh-911")
    feeder = Feeder(store, now)
    delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, "paeds-shared-secret-0123")
    with tracer().start_as_current_span("POST /fhir") as request:  # the agency's request, as the API traces it
        prepared, problems = feeder.ingest.prepare(j.before_consent)
    assert not problems
    store.append([p.row for p in prepared if p is not None])  # the ingest log, headers and all
    feeder.feed(j.before_consent + j.consent, now)  # projected; consent given: the report is queued

    stats = deliver(store, now)
    assert stats.delivered >= 1 and hook.requests
    trace_id = request.get_span_context().trace_id
    sent = [s for s in spans.get_finished_spans() if s.name == "deliver"]
    to_webhook = [s for s in sent if s.parent is not None and s.parent.span_id == request.get_span_context().span_id]
    assert to_webhook and all(s.context.trace_id == trace_id for s in to_webhook)
    assert {s.attributes["hub.delivery.kind"] for s in to_webhook if s.attributes} == {"share"}
    # information the log holds no trace for (the consent, sent without a span) starts a trace of its own
    assert all(s.context.trace_id != trace_id for s in sent if s not in to_webhook)
