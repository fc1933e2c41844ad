"""Payload formats: content-type checks and decoding JSON, NDJSON and CSV with line numbers.

Messages describe where a payload is broken, never what it contains.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from hub.core.errors import Problem, ValidationError
from hub.core.limits import DEPTH_RULE, too_deep

JSON = ("application/json",)
NDJSON = ("application/x-ndjson", "application/ndjson", "application/jsonl")
CSV = ("text/csv",)
FHIR_JSON = ("application/fhir+json",)
FHIR_XML = ("application/fhir+xml", "application/xml", "text/xml")
FHIR_NDJSON = ("application/fhir+ndjson",)


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header (lower case, without parameters)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def require(content_type: str | None, accepted: tuple[str, ...]) -> str:
    """Return the media type if it is accepted; otherwise raise :class:`ValidationError`."""
    media = media_type(content_type)
    if media not in accepted:
        shown = media or "(none)"
        raise ValidationError(
            Problem("Content-Type", f"content type {shown} is not accepted; send {', '.join(accepted)}"),
            title="Unsupported content type",
        )
    return media


def decode_text(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(Problem("", f"payload is not UTF-8 (byte {exc.start})")) from None


def _parse(text: str) -> Any:
    """``json.loads`` for a text already checked for depth; ValueError for what the parser refuses."""
    if too_deep(text):
        raise ValueError(DEPTH_RULE)
    try:
        return json.loads(text)
    except RecursionError:  # belt and braces: the depth check should have refused it
        raise ValueError(DEPTH_RULE) from None


def load_json(body: bytes | str, *, where: str = "") -> Any:
    """Parse JSON; raise :class:`ValidationError` saying where it is malformed or which limit it breaks."""
    text = decode_text(body)
    try:
        return _parse(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            Problem(where, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"),
            title="Malformed JSON",
        ) from None
    except ValueError as exc:  # too deep, or an integer with more digits than Python converts
        raise ValidationError(Problem(where, _shape_rule(exc)), title="JSON breaks a shape limit") from None


def _shape_rule(exc: ValueError) -> str:
    message = str(exc)
    return message if message == DEPTH_RULE else "JSON holds a number too long to read"


def _lines(body: bytes | str) -> Iterator[tuple[int, str | Problem]]:
    """Each line of an NDJSON payload, decoded on its own: one line that is not UTF-8 spoils only itself."""
    if isinstance(body, str):
        yield from enumerate(body.splitlines(), start=1)
        return
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    for number, raw in enumerate(body.split(b"\n"), start=1):
        try:
            yield number, raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            yield number, Problem("", f"line is not UTF-8 (byte {exc.start})", number)


def iter_ndjson(body: bytes | str) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    """(line number, object) for each non-blank line; a :class:`Problem` for a broken line."""
    for number, line in _lines(body):
        if isinstance(line, Problem):
            yield number, line
            continue
        if not line.strip():
            continue
        try:
            value = _parse(line)
        except json.JSONDecodeError as exc:
            yield number, Problem("", f"malformed JSON at column {exc.colno}: {exc.msg}", number)
            continue
        except ValueError as exc:
            yield number, Problem("", _shape_rule(exc), number)
            continue
        if not isinstance(value, dict):
            yield number, Problem("", "each line must be a JSON object", number)
            continue
        yield number, value


def iter_csv(body: bytes | str) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    """(line number, row) for each CSV row; the header is line 1. Empty cells become ``None``."""
    reader = csv.reader(io.StringIO(decode_text(body), newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValidationError(Problem("", "CSV payload is empty; expected a header row")) from None
    except csv.Error as exc:
        raise ValidationError(Problem("line 1", f"malformed CSV header: {exc}")) from None
    if not any(header) or len(set(header)) != len(header):
        raise ValidationError(Problem("line 1", "CSV header must name each column once"))
    line = 1
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            yield start, Problem("", f"malformed CSV row: {exc}", start)
            continue
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield start, Problem("", f"row has {len(cells)} columns; the header has {len(header)}", start)
            continue
        yield start, {h: (c.strip() or None) for h, c in zip(header, cells, strict=True)}
