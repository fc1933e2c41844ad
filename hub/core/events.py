"""What a connector hands to the hub: one agency event, mapped but not yet accepted.

Connectors (``connectors/``) turn agency payloads into :class:`InboundEvent` values; the ingest
service (``hub.ingest``) pseudonymises the subject, gives the event its hub id, writes its durable
record, encodes it as Avro and publishes it. Nothing here knows about Kafka or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Sector = Literal["health", "social_care", "education", "family", "hub"]

#: Identifier systems the hub links. The value of an identifier never leaves the ingest edge:
#: it is replaced by a keyed-HMAC pseudonym before anything is logged, stored in a key or published.
#: The source system of the hub's own enrolment records (identity links made through the API).
ENROLMENT_SOURCE = "hub-enrolment"

IDENTIFIER_SYSTEMS = ("nhs-number", "upn", "la-person-id", "hub-child-id", "other")


@dataclass(frozen=True)
class SubjectRef:
    """The agency identifier of the person an event is about."""

    system: str
    value: str

    def __repr__(self) -> str:  # never print the identifier's value
        return f"SubjectRef(system={self.system!r}, value=<redacted>)"


@dataclass(frozen=True)
class InboundEvent:
    """One agency event mapped to a hub record type, before acceptance.

    ``body`` holds the record's fields other than ``meta`` as Python values fastavro can write:
    ``datetime`` (timezone-aware) for timestamp-millis fields, ``date`` for date fields, dicts for
    nested records (Service, Professional), strings for enum symbols.
    """

    record_type: str  # short name in uk.familyhub.event, e.g. "ReportIssued"
    sector: Sector
    source_system: str
    source_id: str
    occurred_at: datetime
    subject: SubjectRef
    body: dict[str, Any] = field(default_factory=dict)
    source_version: int = 1
    category: str = "general"
    status: str = "active"
    mapping: str | None = None
    #: the body's Avro bytes as a connector encoded them while checking it (``connectors.schemas.checked_body``,
    #: against the schemas the hub ships), with the very body object they encode
    encoded: tuple[dict[str, Any], bytes] | None = field(default=None, compare=False, repr=False)

    def encoded_body(self) -> bytes | None:
        """The body's Avro bytes, if they were made for this event's own body: an event rebuilt with
        another body (``dataclasses.replace``) has none, and is encoded whole by the hub."""
        enc = self.encoded
        return enc[1] if enc is not None and enc[0] is self.body else None
