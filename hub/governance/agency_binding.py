"""Ingest bound to the authenticated agency, the way an integration engine binds a channel.

Every event an agency sends passes :meth:`AgencyBinding.bind` before it is accepted:

* a hub-internal record type (``hub.internal`` in its schema: identity links) is refused (403);
* the source system is the agency's registered one, never the payload's: the event is recorded
  under ``<agency id>/<source system>`` (:meth:`Registration.source_key`), so the source identity
  is (agency, source system, resource type, id) and two agencies, or an agency and the hub's own
  enrolment and consent records, never share an event id. ``POST /v1/events`` may name one of the
  agency's registered source systems; naming any other is refused (403);
* a record naming another organisation as its producing service, or a FHIR resource whose
  ``meta.source`` names another system, is refused (403);
* a consent record is stamped with the agency that recorded it and whether the registry lets that
  agency record consent (:mod:`hub.sharing.recorded_consent` decides whether it is in force).

Each refusal is written to the audit log (``ingest_refused``, with the rule broken) and answered
with a 403 problem document; each consent an agency records is audited as ``consent_recorded``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from connectors.results import RecordResult
from consent.fhir import SYS_DIRECTIVE
from hub.core import records
from hub.core.errors import ForbiddenError
from hub.core.events import InboundEvent
from hub.governance.agencies import MAX_SOURCE, Registration
from hub.governance.audit import AuditLog

RECORDED_BY = "https://fhir.familyhub.uk/StructureDefinition/recorded-by"
RECORDER_REGISTERED = "https://fhir.familyhub.uk/StructureDefinition/recorder-registered"
AGENCY_SYSTEM = "https://fhir.familyhub.uk/Id/agency"
_STAMPS = (RECORDED_BY, RECORDER_REGISTERED)


#: record types that carry a consent directive id
CONSENT_RECORDS = ("ConsentGranted", "ConsentWithdrawn")


def producing_organisation(body: dict[str, Any]) -> str | None:
    """The organisation a record names as its producer (its service's or school's agency id)."""
    service = body.get("service") or body.get("school")
    agency = service.get("agency_id") if isinstance(service, dict) else None
    return str(agency) if agency else None


def scoped_directive(agency_id: str, directive_id: str) -> str:
    """An agency's consent id as the hub keeps it: scoped to the agency, so two agencies' ``Consent/1`` are
    two directives (an id already scoped to this agency is left as it is)."""
    prefix = f"{agency_id}:"
    return directive_id if directive_id.startswith(prefix) else prefix + directive_id


def stamp_consent(fhir_consent: str, registration: Registration, directive_id: str | None = None) -> str:
    """The Consent JSON with the recording agency and whether it is a registered consent recorder
    (any such extensions the sender put there are replaced) and, with ``directive_id``, the hub's
    directive identifier set to it (the agency-scoped id the event carries)."""
    resource = json.loads(fhir_consent)
    if not isinstance(resource, dict):
        return fhir_consent
    if directive_id is not None:
        others = [i for i in resource.get("identifier") or []
                  if not (isinstance(i, dict) and i.get("system") == SYS_DIRECTIVE)]
        resource["identifier"] = [{"system": SYS_DIRECTIVE, "value": directive_id}, *others]
    kept = [e for e in resource.get("extension") or [] if not (isinstance(e, dict) and e.get("url") in _STAMPS)]
    resource["extension"] = [*kept,
                             {"url": RECORDED_BY, "valueIdentifier": {"system": AGENCY_SYSTEM,
                                                                      "value": registration.agency_id}},
                             {"url": RECORDER_REGISTERED, "valueBoolean": registration.records_consent}]
    return json.dumps(resource, separators=(",", ":"))


class AgencyBinding:
    """Binds one request's events to the registration of the agency that sent them."""

    def __init__(self, registration: Registration, audit: AuditLog, actor: str, route: str) -> None:
        self.registration = registration
        self.audit = audit
        self.actor = actor
        self.route = route

    def refuse(self, rule: str, message: str) -> ForbiddenError:
        """Audit the refusal and return the 403 to raise."""
        self.audit.record("ingest_refused", actor=self.actor, actor_role="agency", data_ref=f"POST {self.route}",
                          detail={"agency": self.registration.agency_id, "rule": rule})
        return ForbiddenError(message)

    def bind(self, event: InboundEvent, *, named_system: bool = False) -> InboundEvent:
        """The event as the hub records it from this agency (see the module docstring).

        ``named_system``: the event's ``source_system`` was named by the sender (``POST /v1/events``)
        rather than by the connector's mapping.
        """
        reg = self.registration
        if event.record_type in records.catalogue().internal_types:
            raise self.refuse("internal_record", f"record type {event.record_type} is hub-internal: only the hub's "
                                                 "own routes create it (enrolment links identifiers)")
        system = reg.default_source
        if named_system:
            if reg.registered and event.source_system not in reg.source_systems:
                raise self.refuse("source_system", f"source_system {event.source_system!r} is not one of agency "
                                                   f"{reg.agency_id}'s registered source systems")
            system = event.source_system
        if len(reg.source_key(system)) > MAX_SOURCE:
            raise self.refuse("source_system", f"agency id and source system together must fit {MAX_SOURCE} "
                                               "characters")
        organisation = producing_organisation(event.body)
        if reg.organisations is not None and organisation is not None and organisation not in reg.organisations:
            raise self.refuse("organisation", f"the record names organisation {organisation!r} as its producer; "
                                              f"agency {reg.agency_id} may send only its own organisations' records")
        body = event.body
        if event.record_type in CONSENT_RECORDS and body.get("directive_id"):
            body = {**body, "directive_id": scoped_directive(reg.agency_id, str(body["directive_id"]))}
        if event.record_type == "ConsentGranted" and isinstance(body.get("fhir_consent"), str):
            body = {**body, "fhir_consent": stamp_consent(body["fhir_consent"], reg, body.get("directive_id"))}
            self.audit.record("consent_recorded", actor=self.actor, actor_role="agency",
                              data_ref=f"POST {self.route}",
                              detail={"agency": reg.agency_id, "directive_id": str(body.get("directive_id")),
                                      "registered_recorder": reg.records_consent})
        return replace(event, source_system=reg.source_key(system), body=body)

    def bind_results(self, results: Iterable[RecordResult]) -> Iterator[RecordResult]:
        """``results`` with every event bound; a refusal raises while they are read."""
        for result in results:
            yield result if result.event is None else replace(result, event=self.bind(result.event))

    def check_sources(self, resources: Iterable[dict[str, Any] | None]) -> None:
        """Refuse FHIR resources whose ``meta.source`` names a system this agency is not registered for."""
        reg = self.registration
        if not reg.registered:
            return
        allowed = set(reg.source_systems)
        for resource in resources:
            meta = resource.get("meta") if isinstance(resource, dict) else None
            source = meta.get("source") if isinstance(meta, dict) else None
            if not isinstance(source, str) or not source:
                continue
            tail = source.rstrip("/").replace("#", "/").replace(":", "/").rsplit("/", 1)[-1]
            if source not in allowed and tail not in allowed:
                raise self.refuse("meta_source", f"meta.source {source!r} is not one of agency {reg.agency_id}'s "
                                                 "registered source systems")
