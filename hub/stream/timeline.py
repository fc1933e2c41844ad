"""Pure timeline logic: what a decoded hub record means as a timeline entry. No Kafka, no database.

An entry is keyed by the hub event id (one per source record); a newer source version replaces the
older one (rescheduled, amended, cancelled), an older or equal version changes nothing, and
``entered_in_error`` hides the entry. Identity links are not entries: they say which child and
household a subject belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from hub.core import records

_SECTOR_AGENCY = {"health": "Health", "social_care": "Local authority", "education": "Education",
                  "family": "Family", "hub": "Hub"}


@dataclass(frozen=True)
class Entry:
    event_id: str
    subject: str
    record_type: str
    ce_type: str
    sector: str
    agency_id: str | None
    service_name: str | None
    category: str
    status: str
    source_system: str
    source_version: int
    occurred_at: datetime
    received_at: datetime
    summary: str
    record: str  # JSON of the record


@dataclass(frozen=True)
class Link:
    subject: str
    child_id: str
    household_id: str
    identifier_system: str
    active: bool
    event_id: str
    source_version: int
    occurred_at: datetime


def _human(value: str) -> str:
    return value.replace("_", " ")


def summarise(record_type: str, r: dict[str, Any]) -> str:
    """One readable line from the record type's ``hub.summary`` template (service and event fields, never
    identifiers); the record type itself where the schema gives none."""
    spec = records.catalogue().types.get(record_type)
    if spec is None or spec.summary is None:
        return _human(record_type)
    return spec.summary.render(r)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


def to_json(record: dict[str, Any]) -> str:
    return json.dumps(record, default=_json_default, separators=(",", ":"))


def entry_row(record_type: str, ce_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """The ``timeline_entries`` row of a decoded record, as a plain dict (the projection's bulk insert)."""
    meta = record["meta"]
    service = record.get("service") or record.get("school") or {}
    return {
        "event_id": meta["event_id"], "subject": meta["subject"], "record_type": record_type, "ce_type": ce_type,
        "sector": service.get("sector", "hub"), "agency_id": service.get("agency_id"),
        "service_name": service.get("service_name"), "category": meta["category"], "status": meta["status"],
        "source_system": meta["source_system"], "source_version": meta["source_version"],
        "occurred_at": meta["occurred_at"], "received_at": meta["received_at"],
        "summary": summarise(record_type, record), "record": to_json(record),
    }


def link_row(record: dict[str, Any]) -> dict[str, Any]:
    """The ``identity_links`` row of a decoded IdentityLinked record, as a plain dict."""
    meta = record["meta"]
    return {"subject": meta["subject"], "child_id": record["child_id"], "household_id": record["household_id"],
            "identifier_system": record["identifier_system"],
            "active": record["action"] == "link" and meta["status"] == "active",
            "event_id": meta["event_id"], "source_version": meta["source_version"],
            "occurred_at": meta["occurred_at"]}


def entry_from(record_type: str, ce_type: str, record: dict[str, Any]) -> Entry:
    return Entry(**entry_row(record_type, ce_type, record))


def link_from(record: dict[str, Any]) -> Link:
    return Link(**link_row(record))


def agency_label(sector: str) -> str:
    return _SECTOR_AGENCY.get(sector, sector)


def newer(incoming: tuple[int, datetime], current: tuple[int, datetime] | None) -> bool:
    """Whether an incoming (version, time) replaces the stored one: strictly higher version wins."""
    return current is None or incoming[0] > current[0]
