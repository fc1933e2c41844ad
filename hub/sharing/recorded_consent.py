"""Consent an agency recorded: that agency's statement that a household member consented.

A FHIR Consent sent by an agency (``/fhir/Consent``, ``/v1/ingest/health``, ``POST /v1/events``) is
stamped at ingest with the agency that recorded it and whether the agency registry lets it record
consent (:func:`hub.governance.agency_binding.stamp_consent`). It comes into force (``active``) only
when both hold:

* the agency is registered as a consent recorder (``records_consent`` in ``HUB_AGENCIES_FILE``), and
* the performer is a known member of the child's household with authority: a member with parental
  responsibility (``RelatedPerson/<member id>``), or the child (``Patient/<child id>``) once they make
  their own decisions (16, or recorded competence).

Otherwise the directive waits as ``pending_confirmation`` (listed with the child's consents, never
used for a share) until the family or their coordinator confirms it
(``POST …/consents/{directive_id}/confirm``), which records it through the hub's own consent source.
Directives given through the hub's own routes (source ``hub-consent``) are the family's and apply as
they are.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consent import Directive, Grantor
from hub.db.schema import household_members, timeline_entries
from hub.governance.agency_binding import RECORDED_BY, RECORDER_REGISTERED

PENDING = "pending_confirmation"
HUB_CONSENT_SOURCE = "hub-consent"


def agency_recorded(record: dict[str, Any]) -> bool:
    """True for a consent record that did not come through the hub's own consent routes."""
    return str(record["meta"].get("source_system")) != HUB_CONSENT_SOURCE


def recorder(fhir_consent: str | None) -> tuple[str | None, bool]:
    """(the agency that recorded this Consent, whether it was a registered consent recorder)."""
    try:
        resource = json.loads(fhir_consent or "{}")
    except ValueError:
        return None, False
    agency, registered = None, False
    for ext in resource.get("extension") or [] if isinstance(resource, dict) else []:
        if not isinstance(ext, dict):
            continue
        if ext.get("url") == RECORDED_BY:
            agency = (ext.get("valueIdentifier") or {}).get("value")
        elif ext.get("url") == RECORDER_REGISTERED:
            registered = ext.get("valueBoolean") is True
    return agency, registered


def _performer_has_authority(conn: Connection, directive: Directive, home: tuple[str, str]) -> bool:
    household_id, child_id = home
    if directive.made_by_role is Grantor.YOUNG_PERSON:
        from hub.sharing.child_state import load_child

        # the performer is the consent's own patient (the agency's reference to the child) or the hub's child
        is_child = directive.made_by in (child_id, directive.child_id)
        return is_child and load_child(conn, child_id).young_person_controls(directive.made_at)
    M = household_members.c
    return conn.execute(sa.select(M.member_id).where(
        M.member_id == directive.made_by, M.household_id == household_id,
        M.parental_responsibility.is_(True))).first() is not None


def in_force(conn: Connection, record: dict[str, Any], directive: Directive, home: tuple[str, str] | None) -> bool:
    """Whether an agency-recorded directive comes into force without confirmation (module docstring)."""
    _, registered = recorder(record.get("fhir_consent"))
    return registered and home is not None and _performer_has_authority(conn, directive, home)


def withdrawal_allowed(conn: Connection, record: dict[str, Any], current_event_id: str | None) -> bool:
    """An agency withdraws only a directive it recorded itself, never the family's or another agency's."""
    if not agency_recorded(record) or current_event_id is None:
        return True
    T = timeline_entries.c
    source = conn.execute(sa.select(T.source_system).where(T.event_id == current_event_id)).scalar()
    agency = str(record["meta"].get("source_system")).split("/", 1)[0]
    return source is None or source.split("/", 1)[0] == agency
