"""JSON logs on stdout through a structlog processor pipeline that removes personal identifiers.

The :func:`redact_identifiers` processor runs last before rendering, on every log line, whoever
wrote it: NHS numbers (10 digits, spaced or not), UPNs (letter + 12 characters) and dates of birth
in values are replaced, and keys that name personal data (name, dob, nhs_number, upn, …) are
dropped to ``<redacted>``; the patterns and keys are those of :mod:`hub.core.privacy`. Code should
log pseudonymous subjects and event ids, never identifiers; this processor is the safety net.
:func:`add_trace_ids` adds the active span's ``trace_id`` and ``span_id`` (:mod:`hub.core.tracing`), so a
line can be found from a trace and a trace from a line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from hub.core.privacy import PERSONAL_KEYS, REDACTED, scrub_value


def redact_identifiers(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: strip personal identifiers from every key and value of a log line."""
    out: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key.lower() in PERSONAL_KEYS:
            out[key] = REDACTED
        elif key in ("timestamp", "level", "logger"):
            out[key] = value
        else:
            out[key] = scrub_value(value)
    return out


def add_trace_ids(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` (hex) of the active span, when there is one
    (the OpenTelemetry API only: logging never loads the SDK)."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is when a line is written, not when logging was set up
    (a process that swaps its standard output, as a test runner or a daemon does, keeps its logs)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Route structlog and the standard library (faust, aiokafka, uvicorn) through one pipeline.

    Lines go to ``stream`` if given, else to the standard output of the moment. Calling it again
    replaces the handler; the processor chain (which loggers cache on first use) is always the same.
    """
    shared: list[Any] = [  # structlog processors
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        structlog.processors.format_exc_info,
        redact_identifiers,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared[:-2], structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared[:-2],
        processors=[
            structlog.processors.format_exc_info,
            redact_identifiers,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else StdoutHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "faust", "mode", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
