"""What a FHIR server would hold between requests: an agency's Patients, Practitioners and services.

Agencies send FHIR the REST way: first ``POST /fhir/Patient``, then an Appointment whose subject is
``Patient/{id}``. The hub remembers each agency's context resources (:data:`REMEMBERED`) by
``{agency}/{resourceType}/{id}``, through a :class:`ReferenceDirectory` the caller passes in (the hub's
is :mod:`hub.ingest.references`, over the ``fhir_references`` table), so a later reference resolves as
it would on a FHIR server: only within the agency that sent the resource.

Only what mapping needs is kept (:func:`summary`): for a Patient, the identity the events about it
carry (the directory stores it pseudonymised, never the NHS number in clear, and no name); for the
others their identifiers, names and codes and the references between them.
"""

from __future__ import annotations

from typing import Any, Protocol

from connectors.identifiers import FHIR_NHS_NUMBER_SYSTEM, FHIR_ODS_ORGANISATION_SYSTEM

#: Resource types remembered between requests.
REMEMBERED = ("Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "HealthcareService")

#: Elements kept of each non-Patient resource: what :class:`connectors.health.context` reads.
_KEPT = (
    "name",
    "type",
    "specialty",
    "code",
    "providedBy",
    "practitioner",
    "healthcareService",
    "organization",
    "managingOrganization",
)
_REFERENCES = _KEPT[4:]


class ReferenceDirectory(Protocol):
    """One agency's remembered resources.

    ``lookup`` answers a resource as :func:`summary` gave it, except that a Patient's ``identity``
    is replaced by ``pseudonym`` (the hub's pseudonym of that identity); None when it is not known.
    ``remember`` keeps a resource's summary, replacing an older version (``version``).
    """

    def lookup(self, resource_type: str, resource_id: str) -> dict[str, Any] | None: ...

    def remember(self, resource_type: str, resource_id: str, summary: dict[str, Any], version: int) -> None: ...


def _reference(value: Any) -> Any:
    if isinstance(value, list):
        return [_reference(v) for v in value]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k in ("reference", "type", "identifier", "display")}
    return value


def summary(resource: dict[str, Any], identity: dict[str, str] | None = None) -> dict[str, Any]:
    """What the hub keeps of a context resource. A Patient keeps only ``identity``
    (``{"system", "value"}`` as :func:`connectors.health.context.patient_identity` found it)."""
    kind = str(resource.get("resourceType"))
    out: dict[str, Any] = {"resourceType": kind, "id": resource.get("id")}
    if kind == "Patient":
        out["identity"] = identity
        return out
    identifiers = [
        {"system": i.get("system"), "value": i.get("value")}
        for i in resource.get("identifier") or []
        if isinstance(i, dict) and i.get("value") and i.get("system") != FHIR_NHS_NUMBER_SYSTEM
    ]
    ods = [i for i in identifiers if i["system"] == FHIR_ODS_ORGANISATION_SYSTEM]
    if identifiers:
        out["identifier"] = ods[:1] or identifiers[:1]
    for key in _KEPT:
        if resource.get(key) not in (None, "", []):
            out[key] = _reference(resource[key]) if key in _REFERENCES else resource[key]
    return out


def split_reference(reference: str) -> tuple[str, str] | None:
    """``(resourceType, id)`` of a literal reference: ``Type/id``, ``Type/id/_history/n`` or an
    absolute URL ending so; None for a contained (``#id``) or ``urn:`` reference."""
    if reference.startswith(("#", "urn:")):
        return None
    parts = [p for p in reference.split("?", 1)[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return parts[-2], parts[-1]
    return None
