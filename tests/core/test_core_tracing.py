"""Trace ids in log lines and trace context in Kafka headers (hub/core/tracing.py, hub/core/logging.py)."""

from __future__ import annotations

import io
import json

from hub.core.logging import configure_logging, get_logger
from hub.core.tracing import context_from_headers, current_headers, tracer
from tests.support import span_exporter


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_log_line_carries_the_active_spans_ids_and_none_without_a_span() -> None:
    span_exporter()
    out = io.StringIO()
    configure_logging(stream=out)
    log = get_logger("tests.tracing")
    log.info("outside")
    with tracer().start_as_current_span("work") as span:
        log.info("inside", nhs_number="9990000018")
        headers = current_headers()
    outside, inside = lines(out)
    assert "trace_id" not in outside and "span_id" not in outside
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x") and inside["span_id"] == format(ctx.span_id, "016x")
    assert inside["nhs_number"] == "<redacted>"  # the privacy net still runs after the ids are added
    assert [k for k, _ in headers] == ["traceparent"] and current_headers() == []


def test_trace_context_is_read_back_from_headers_and_a_malformed_one_is_ignored() -> None:
    span_exporter()
    with tracer().start_as_current_span("publish") as span:
        headers = current_headers()
    ctx = context_from_headers([("ce_id", b"x"), *headers])
    assert ctx is not None
    with tracer().start_as_current_span("project", context=ctx) as child:
        assert child.get_span_context().trace_id == span.get_span_context().trace_id
    assert context_from_headers([("traceparent", b"00-zz-01")]) is None
    assert context_from_headers([("ce_id", b"x")]) is None
