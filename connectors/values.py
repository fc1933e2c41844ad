"""Value conversions named by mapping files (``"type": ...``).

Each converter raises ``ValueError`` with a message that describes the expected form but never
quotes the value (it may be a date of birth or an identifier).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from connectors.paths import resolve

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def first(value: Any) -> Any:
    """The first of several values, or the value itself."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def to_string(value: Any, **_: Any) -> str:
    value = first(value)
    if isinstance(value, dict | list):
        raise ValueError("expected text, found a structure")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def to_int(value: Any, **_: Any) -> int:
    value = first(value)
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected a whole number") from None


def to_bool(value: Any, **_: Any) -> bool:
    value = first(value)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false")


def to_date(value: Any, *, format: str | None = None, **_: Any) -> date:
    value = first(value)
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if format:
            return datetime.strptime(text, format).date()
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"expected a date ({format or 'YYYY-MM-DD'})") from None


#: partial dates as FHIR allows them (``date`` and ``dateTime`` without a time): a year, a month, a day
_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _partial_date(text: str) -> datetime:
    """The start of the year, month or day a partial date names (naive; the caller gives it a zone)."""
    year, month, day = [*text.split("-"), "01", "01"][:3]
    return datetime(int(year), int(month), int(day))


def to_datetime(value: Any, *, format: str | None = None, tz: tzinfo | None = None, **_: Any) -> datetime:
    """A timezone-aware datetime. A naive time is in ``tz``.

    Partial dates (``"2024"``, ``"2024-03"``, ``"2024-03-05"``: FHIR ``date`` and ``dateTime`` values
    without a time) are the start of the year, month or day they name, in ``tz``, or in UTC when the
    mapping sets no timezone. The health mapping sets ``UTC``, so a FHIR partial date is the start of
    that period in UTC (a FHIR dateTime with a time always carries its offset).
    """
    value = first(value)
    expected = f"expected a date-time ({format or 'ISO 8601 with a UTC offset'})"
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        try:
            if format:
                parsed = datetime.strptime(text, format)
            elif _PARTIAL_DATE.match(text):
                parsed = _partial_date(text).replace(tzinfo=tz or UTC)
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(expected) from None
    if parsed.tzinfo is None:
        if tz is None:
            raise ValueError("date-time has no UTC offset and the mapping sets no timezone")
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def ref_id(value: Any, **_: Any) -> str:
    """The id part of a FHIR reference (``Appointment/abc``, ``urn:uuid:abc``, ``#abc``) or of a URL."""
    text = to_string(value)
    for separator in ("/", ":", "#"):
        text = text.rsplit(separator, 1)[-1]
    if not text:
        raise ValueError("expected a reference with an id")
    return text


def to_json(value: Any, **_: Any) -> str:
    """The value as compact JSON, without the connector's own ``$`` context keys."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if not str(k).startswith("$")}
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def present(value: Any, **_: Any) -> bool:
    return value not in (None, "", [], {})


CONVERTERS: dict[str, Callable[..., Any]] = {
    "string": to_string,
    "int": to_int,
    "bool": to_bool,
    "date": to_date,
    "datetime": to_datetime,
    "ref_id": ref_id,
    "json": to_json,
    "present": present,
    "raw": lambda value, **_: value,
}

#: The converter used for a schema field kind when a mapping names no type.
DEFAULT_FOR_KIND = {
    "string": "string",
    "enum": "string",
    "int": "int",
    "long": "int",
    "boolean": "bool",
    "date": "date",
    "timestamp": "datetime",
}


def zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    return UTC if name.upper() == "UTC" else ZoneInfo(name)


# --- computations named by ``"compute"`` -------------------------------------------------------


def weeks_between(start: date | None, end: date | None) -> int | None:
    """Whole weeks from ``start`` to ``end`` (the SEN2 20-week clock); None if either is missing."""
    if start is None or end is None:
        return None
    return (to_date(end) - to_date(start)).days // 7


def days_between(start: date | None, end: date | None) -> int | None:
    if start is None or end is None:
        return None
    return (to_date(end) - to_date(start)).days


COMPUTATIONS: dict[str, Callable[..., Any]] = {
    "weeks_between": weeks_between,
    "days_between": days_between,
}

__all__ = ["COMPUTATIONS", "CONVERTERS", "DEFAULT_FOR_KIND", "first", "resolve", "zone"]
