"""OpenTelemetry tracing: one tracer provider per process, W3C ``traceparent`` in and out of Kafka headers.

Every hub process installs the SDK's tracer provider at start (:func:`configure_tracing`), so spans have
real trace and span ids that log lines carry (:func:`hub.core.logging.add_trace_ids`) and that travel
with a record: the ingest request's span is written into the record's ``traceparent`` header by the
one header builder (:mod:`hub.wire.envelope`), the publisher's span is its child, and the stream
worker (projection) and the deliverer (a share's delivery) continue the trace from that header.

Nothing leaves the process unless ``HUB_TRACING_EXPORTER=otlp``: then spans are batched to the OTLP/HTTP
endpoint in ``HUB_TRACING_OTLP_ENDPOINT`` (else the exporter's own ``OTEL_EXPORTER_OTLP_*`` variables,
default ``http://localhost:4318/v1/traces``). ``HUB_TRACING_SAMPLE_RATIO`` samples root traces (a
child follows its parent's decision). Span names and attributes hold route templates, topics, record
types and hub ids only: never a path with its query, a key or a value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hub.core.privacy import scrub_value
from hub.core.settings import Settings

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
INSTRUMENTATION = "familyhub"

_PROPAGATOR = TraceContextTextMapPropagator()
_state: dict[str, Any] = {"exporters": set()}
#: attributes instrumentation may fill from the request line (FastAPI's server span): an agency may
#: name a FHIR resource by an NHS number, a query may carry an identifier or a date
_REQUEST_ATTRIBUTES = ("url.path", "url.query", "url.full", "http.target")


class ScrubbingProcessor(SpanProcessor):
    """Scrubs identifiers from a new span's request-line attributes with the log lines' patterns
    (:mod:`hub.core.privacy`), before any exporter sees the span."""

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        attributes = span.attributes or {}
        for key in _REQUEST_ATTRIBUTES:
            value = attributes.get(key)
            if isinstance(value, str):
                clean = scrub_value(value)
                if clean != value:
                    span.set_attribute(key, clean)


def configure_tracing(service: str, *, exporter: str = "none", endpoint: str = "", sample_ratio: float = 1.0,
                      processors: Iterable[SpanProcessor] = ()) -> TracerProvider:
    """Install this process's tracer provider (once; a second call adds processors to it).

    ``exporter`` is ``none`` (spans exist for ids in logs and headers, nothing is sent) or ``otlp``.
    ``processors`` are extra span processors (a test's in-memory exporter).
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        resource = Resource.create({"service.name": service, "service.namespace": "familyhub"})
        provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
        provider.add_span_processor(ScrubbingProcessor())
        trace.set_tracer_provider(provider)
    for processor in processors:
        provider.add_span_processor(processor)
    if exporter == "otlp" and "otlp" not in _state["exporters"]:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint or None)))
        _state["exporters"].add("otlp")
    return provider


def configure_from_settings(settings: Settings, service: str) -> TracerProvider:
    """:func:`configure_tracing` with the ``HUB_TRACING_*`` settings (:class:`hub.core.settings.Settings`)."""
    return configure_tracing(service, exporter=settings.tracing_exporter, endpoint=settings.tracing_otlp_endpoint,
                             sample_ratio=settings.tracing_sample_ratio)


def tracer() -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION)


def current_headers() -> list[tuple[str, bytes]]:
    """``traceparent`` (and ``tracestate``) of the active span as Kafka headers; none without a span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items() if k in (TRACEPARENT, TRACESTATE)]


def context_from_headers(headers: Iterable[tuple[str, bytes | str]]) -> otel_context.Context | None:
    """The trace context a record's headers carry, or None when they carry none (or a malformed one)."""
    carrier = {k: (v.decode(errors="replace") if isinstance(v, bytes | bytearray) else str(v))
               for k, v in headers if k in (TRACEPARENT, TRACESTATE)}
    if TRACEPARENT not in carrier:
        return None
    ctx = _PROPAGATOR.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def _traceparent(headers: Iterable[tuple[str, bytes | str]]) -> bytes | str | None:
    for k, v in headers:
        if k == TRACEPARENT:
            return v
    return None


@contextlib.contextmanager
def continued(name: str, carriers: Sequence[Iterable[tuple[str, bytes | str]]], *,
              kind: SpanKind = SpanKind.CONSUMER, attributes: Mapping[str, Any] | None = None,
              ) -> Iterator[list[trace.Span]]:
    """Spans continuing the traces of records handled together (a worker's batch, a delivery pass).

    One span ``name`` per distinct ``traceparent`` among the records' headers (``carriers``), a child of
    that context, and one new root span for the records that carry none; each counts its records in
    ``hub.records``. A batch of a thousand records from a few requests costs a few spans, not a thousand.
    The first span is the active one inside (log lines carry its ids); all end when the block does,
    marked as errors if it raised.
    """
    groups: dict[bytes | str | None, int] = {}
    for headers in carriers:
        key = _traceparent(headers)
        groups[key] = groups.get(key, 0) + 1
    spans: list[trace.Span] = []
    for key, count in groups.items():
        parent = context_from_headers([(TRACEPARENT, key)]) if key is not None else None
        spans.append(tracer().start_span(name, context=parent or otel_context.Context(), kind=kind,
                                         attributes={**(attributes or {}), "hub.records": count}))
    try:
        if spans:
            with trace.use_span(spans[0], end_on_exit=False, record_exception=False, set_status_on_exception=False):
                yield spans
        else:
            yield spans
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()
