"""JSON logs on stdout through a structlog processor pipeline that removes personal identifiers.

The :func:`redact_identifiers` processor runs last before rendering, on every log line, whoever
wrote it: NHS numbers (10 digits, spaced or not), UPNs (letter + 12 characters) and dates of birth
in values are replaced, and keys that name personal data (name, dob, nhs_number, upn, …) are
dropped to ``<redacted>``. Code should log pseudonymous subjects and event ids, never identifiers;
this processor is the safety net.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_NHS = re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)")
_UPN = re.compile(r"(?<![A-Za-z0-9])[A-HJ-NP-Z]\d{11}[0-9A-HJ-NP-Z](?![A-Za-z0-9])")
_DATE = re.compile(r"(?<!\d)(19|20)\d\d-[01]\d-[0-3]\d(?![\dT:])")
#: opaque ids the hub makes (UUIDs, hex digests): a run of digits inside one is not an identifier
_OPAQUE = re.compile(r"(?<![0-9A-Za-z-])(?=[0-9a-fA-F-]*[a-fA-F])[0-9a-fA-F][0-9a-fA-F-]{15,}(?![0-9A-Za-z-])")
_PERSONAL_KEYS = frozenset(
    {"name", "given", "family", "surname", "forename", "birth_date", "birthdate", "dob", "date_of_birth",
     "nhs_number", "nhs", "upn", "address", "postcode", "phone", "email", "identifier_value"}
)


def scrub_text(text: str) -> str:
    """Replace anything shaped like an NHS number, UPN or bare calendar date.

    UUIDs and hex digests (16+ hex characters with at least one letter) are left whole: an event id
    such as ``…-4a1b-9c3d-a123456789b0`` holds ten digits in a row by chance, not an NHS number.
    """
    if not any(c.isdigit() for c in text):
        return text
    out, last = [], 0
    for m in _OPAQUE.finditer(text):
        out += [_scrub_plain(text[last:m.start()]), m.group()]
        last = m.end()
    if not out:
        return _scrub_plain(text)
    out.append(_scrub_plain(text[last:]))
    return "".join(out)


def _scrub_plain(text: str) -> str:
    text = _NHS.sub("<nhs-number>", text)
    text = _UPN.sub("<upn>", text)
    return _DATE.sub("<date>", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: ("<redacted>" if str(k).lower() in _PERSONAL_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_identifiers(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: strip personal identifiers from every key and value of a log line."""
    out: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key.lower() in _PERSONAL_KEYS:
            out[key] = "<redacted>"
        elif key in ("timestamp", "level", "logger"):
            out[key] = value
        else:
            out[key] = _scrub(value)
    return out


def configure_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Route structlog and the standard library (faust, aiokafka, uvicorn) through one pipeline."""
    stream = stream or sys.stdout
    shared: list[Any] = [  # structlog processors
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
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
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "faust", "mode", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
