"""Agency connectors: turn health (FHIR R4 / UK Core), social-care and education payloads into
:class:`hub.core.events.InboundEvent` values through one declarative mapping engine.

Public entry points:

* :func:`connectors.health.parse_payload`, :func:`connectors.social_care.parse_payload`,
  :func:`connectors.education.parse_payload` -> :class:`connectors.results.ParseResult`
* :func:`connectors.sectors.reader` -> the :class:`connectors.sectors.SectorReader` of a sector (its media
  types, file suffixes and default mapping)
* :func:`connectors.files.iter_file` -> per-record :class:`connectors.results.RecordResult`
* :class:`connectors.client.HubClient` for agency developers
"""
