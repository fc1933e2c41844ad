"""Turn JSON values into the Python values fastavro writes, guided by the Avro schema.

JSON has no dates: timestamp-millis fields accept ISO 8601 strings with a zone, date fields accept
``YYYY-MM-DD``. Problems are collected with their JSON pointer instead of stopping at the first.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from hub.core.errors import Problem


def coerce(schema: Any, value: Any, pointer: str, problems: list[Problem]) -> Any:
    if isinstance(schema, list):  # union: null first in hub schemas
        if value is None:
            return None
        branches = [s for s in schema if s != "null"]
        return coerce(branches[0], value, pointer, problems) if len(branches) == 1 else value
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        kind = schema.get("type")
        if logical == "timestamp-millis" and isinstance(value, str):
            try:
                ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                problems.append(Problem(pointer, "is not an ISO 8601 date-time"))
                return None
            if ts.tzinfo is None:
                problems.append(Problem(pointer, "date-time needs a time zone (e.g. Z or +01:00)"))
            return ts
        if logical == "date" and isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                problems.append(Problem(pointer, "is not a date (YYYY-MM-DD)"))
                return None
        if kind == "record":
            if not isinstance(value, dict):
                problems.append(Problem(pointer, "must be an object"))
                return value
            return coerce_record(schema, value, pointer, problems)
        if kind == "array" and isinstance(value, list):
            return [coerce(schema["items"], v, f"{pointer}/{i}", problems) for i, v in enumerate(value)]
        if kind == "enum" and value not in schema["symbols"]:
            problems.append(Problem(pointer, f"must be one of {', '.join(schema['symbols'])}"))
            return value
        if isinstance(kind, dict | list):
            return coerce(kind, value, pointer, problems)
    return value


def coerce_record(schema: dict[str, Any], value: dict[str, Any], pointer: str, problems: list[Problem],
                  skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = set()
    for field in schema["fields"]:
        name = field["name"]
        names.add(name)
        if name in skip:
            continue
        if name in value:
            out[name] = coerce(field["type"], value[name], f"{pointer}/{name}", problems)
        elif "default" not in field:
            problems.append(Problem(f"{pointer}/{name}", "is required"))
    for extra in sorted(set(value) - names):
        problems.append(Problem(f"{pointer}/{extra}", "is not a field of this record type"))
    return out
