"""Resolve the references the hub needs and expose them to mappings as ``$`` keys.

For each resource the health connector adds:

``$patient``      who the resource is about, from the subject/patient reference, resolved inside the
                  Bundle (``fullUrl``, ``Type/id``, absolute URLs), ``contained`` (``#id``), among the
                  Patients the agency sent before (:mod:`connectors.health.directory`), or from the
                  reference's own identifier (UK Core ``reference.identifier``):
                  ``{"nhs_number"}`` (checked, modulus 11), else ``{"local_id": "<system>|<value>"}``
                  (the Patient's first local identifier), or ``{"pseudonym"}`` for a remembered Patient.
``$org``          the producing (or, for a ServiceRequest, receiving) service: ``agency_id`` (ODS code),
                  ``agency_name``, ``service_code``, ``service_name``, from the first of
                  :data:`SERVICE_PATHS` that leads to an Organization, HealthcareService,
                  PractitionerRole or Location, or to a reference carrying an ODS identifier.
``$practitioner`` ``{"id", "role", "display_name"}`` of the first practitioner found the same way.
``$requester``    ``$org``-shaped description of ``requester`` (the referrer), with ``practitioner``.
``$declined_by``  resource type of a participant whose status is ``declined`` (who cancelled).
``$location``     name of a Location participant.
``$planned``      the first planned date (:data:`PLANNED_PATHS`: an Appointment's start, a ServiceRequest's
                  occurrence, a CarePlan's period), but no later than now: when nothing records when a
                  booking or referral was made, it was made at the latest when it was sent.
``$previous``     the previous version of the same resource, when known; ``$rescheduled`` is true
                  when it had a different ``start``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.health.directory import REMEMBERED, ReferenceDirectory, split_reference
from connectors.health.fhir import Entry
from connectors.identifiers import (
    FHIR_NHS_NUMBER_SYSTEM,
    FHIR_ODS_ORGANISATION_SYSTEM,
    IdentifierError,
    normalise_nhs_number,
)
from connectors.paths import resolve_all
from connectors.values import to_datetime
from hub.core.errors import Problem

SUBJECT_PATHS = ("subject", "patient", "beneficiary", "for", "participant.actor", "individual")
PLANNED_PATHS = ("start", "requestedPeriod.start", "occurrenceDateTime", "occurrencePeriod.start", "period.start")
SERVICE_PATHS = (
    "serviceProvider",
    "performer.actor",
    "performer",
    "organization",
    "managingOrganization",
    "custodian",
    "author",
    "asserter",
    "recorder",
    "sender",
    "owner",
    "participant.actor",
    "participant.individual",
    "requester",
    "source",
)


#: Root of a resource found in the directory rather than in the payload.
REMEMBERED_ROOT = "remembered "


@dataclass
class Index:
    """The resources of one payload, by ``fullUrl`` and by ``Type/id``."""

    by_key: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    directory: ReferenceDirectory | None = None
    remembered: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: list[Entry], directory: ReferenceDirectory | None = None) -> Index:
        index = cls(directory=directory)
        for entry in entries:
            res = entry.resource
            if res is None:
                continue
            if entry.full_url:
                index.by_key[entry.full_url] = (res, entry.root)
            if res.get("id"):
                index.by_key.setdefault(f"{res.get('resourceType')}/{res['id']}", (res, entry.root))
        return index

    def find(self, reference: str, container: dict[str, Any], root: str) -> tuple[dict[str, Any], str] | None:
        if reference.startswith("#"):
            for i, contained in enumerate(container.get("contained") or []):
                if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                    return contained, f"{root}.contained[{i}]"
            return None
        if reference in self.by_key:
            return self.by_key[reference]
        parts = reference.rstrip("/").split("/")
        if len(parts) >= 2:  # absolute URL or Type/id/_history/n
            for i in range(len(parts) - 1, 0, -1):
                key = f"{parts[i - 1]}/{parts[i]}"
                if key in self.by_key:
                    return self.by_key[key]
        return self.recall(reference)

    def recall(self, reference: str) -> tuple[dict[str, Any], str] | None:
        """A resource the agency sent in an earlier request, from the directory."""
        split = split_reference(reference)
        if self.directory is None or split is None or split[0] not in REMEMBERED:
            return None
        key = "/".join(split)
        if key not in self.remembered:
            self.remembered[key] = self.directory.lookup(*split)
        hit = self.remembered[key]
        return None if hit is None else (hit, f"{REMEMBERED_ROOT}{key}")


def _ref_type(ref: dict[str, Any], target: dict[str, Any] | None) -> str | None:
    if target is not None:
        return str(target.get("resourceType"))
    if ref.get("type"):
        return str(ref["type"])
    split = split_reference(str(ref.get("reference") or ""))
    return split[0] if split else None


def _identifier(resource: dict[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def _code(concepts: Any) -> str | None:
    for value in resolve_all(concepts, "coding.code"):
        return str(value)
    return None


def _name(resource: dict[str, Any]) -> str | None:
    name = resource.get("name")
    if isinstance(name, str):
        return name
    for human in name or []:
        if isinstance(human, dict):
            if human.get("text"):
                return str(human["text"])
            parts = [*(human.get("prefix") or []), *(human.get("given") or []), human.get("family")]
            return " ".join(str(p) for p in parts if p) or None
    return None


class _Describer:
    """Walks references to find the service and practitioner behind them."""

    def __init__(self, index: Index, container: dict[str, Any], root: str):
        self.index, self.container, self.root = index, container, root
        self.org: dict[str, Any] = {}
        self.practitioner: dict[str, Any] = {}

    def target(self, ref: Any) -> dict[str, Any] | None:
        if not isinstance(ref, dict) or not ref.get("reference"):
            return None
        found = self.index.find(str(ref["reference"]), self.container, self.root)
        return found[0] if found else None

    def visit(self, ref: Any, depth: int = 0) -> None:
        if not isinstance(ref, dict) or depth > 3:
            return
        target = self.target(ref)
        kind = _ref_type(ref, target)
        if target is None:
            ods = (
                (ref.get("identifier") or {}).get("value")
                if isinstance(ref.get("identifier"), dict)
                else None
            )
            if ods and (
                ref["identifier"].get("system") == FHIR_ODS_ORGANISATION_SYSTEM or kind == "Organization"
            ):
                self.org.setdefault("agency_id", str(ods))
                self.org.setdefault("agency_name", ref.get("display"))
            elif kind in ("Practitioner", "PractitionerRole") and ref.get("display") and ref.get("reference"):
                self.practitioner.setdefault("id", str(ref["reference"]).rsplit("/", 1)[-1])
                self.practitioner.setdefault("display_name", ref.get("display"))
            return
        if kind == "Organization":
            self.org.setdefault(
                "agency_id", _identifier(target, FHIR_ODS_ORGANISATION_SYSTEM) or target.get("id")
            )
            self.org.setdefault("agency_name", _name(target))
        elif kind == "HealthcareService":
            self.org.setdefault("service_name", _name(target))
            self.org.setdefault("service_code", _code(target.get("type")) or _code(target.get("specialty")))
            self.visit(target.get("providedBy"), depth + 1)
        elif kind == "PractitionerRole":
            self.practitioner.setdefault("role", _code(target.get("code")))
            self.visit(target.get("practitioner"), depth + 1)
            for service in target.get("healthcareService") or []:
                self.visit(service, depth + 1)
            self.visit(target.get("organization"), depth + 1)
        elif kind == "Practitioner":
            self.practitioner.setdefault(
                "id", (target.get("identifier") or [{}])[0].get("value") or target.get("id")
            )
            self.practitioner.setdefault("display_name", _name(target))
        elif kind == "Location":
            self.visit(target.get("managingOrganization"), depth + 1)

    def result(self) -> dict[str, Any] | None:
        org = {k: v for k, v in self.org.items() if v}
        if org and "service_name" not in org and org.get("agency_name"):
            org["service_name"] = org["agency_name"]
        return org or None


def _patient(
    resource: dict[str, Any], index: Index, root: str, row: int | None
) -> tuple[dict[str, Any] | None, list[Problem]]:
    for path in SUBJECT_PATHS:
        for ref in resolve_all(resource, path):
            if not isinstance(ref, dict):
                continue
            found = (
                index.find(str(ref.get("reference") or ""), resource, root) if ref.get("reference") else None
            )
            target, target_root = found if found else (None, "")
            if _ref_type(ref, target) not in ("Patient", None) or (
                target is None and not ref.get("identifier") and "Patient" not in str(ref.get("reference"))
            ):
                continue
            if target is not None and target_root.startswith(REMEMBERED_ROOT):
                return ({"pseudonym": target["pseudonym"]}, []) if target.get("pseudonym") else (None, [
                    Problem(f"{root}.{path}", f"{path} reference names a Patient without an identifier", row)])
            if target is not None:
                return check_patient(target, target_root, row)
            ident = ref.get("identifier")
            if isinstance(ident, dict) and ident.get("system") == FHIR_NHS_NUMBER_SYSTEM:
                return _checked(ident.get("value"), f"{root}.{path}.identifier.value", row)
            local = _local_id(ident)
            if local is not None and _ref_type(ref, None) == "Patient":
                return {"local_id": local}, []
            return None, [
                Problem(
                    f"{root}.{path}",
                    f"{path} reference to the Patient cannot be resolved in the Bundle or among the "
                    "Patients this agency sent before, and carries no identifier",
                    row,
                )
            ]
    return None, [Problem(root, "no subject or patient reference identifies the child", row)]


def _checked(value: Any, location: str, row: int | None) -> tuple[dict[str, Any] | None, list[Problem]]:
    try:
        return {"nhs_number": normalise_nhs_number(value)}, []
    except IdentifierError as exc:
        return None, [Problem(location, str(exc), row)]


def check_patient(
    patient: dict[str, Any], root: str, row: int | None
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The Patient's NHS number (UK Core identifier system, modulus 11) as ``{"nhs_number"}``, else its
    first local identifier as ``{"local_id": "<system>|<value>"}``; or the problem with them."""
    local = None
    for i, ident in enumerate(patient.get("identifier") or []):
        if not isinstance(ident, dict) or ident.get("use") == "old":
            continue
        if ident.get("system") == FHIR_NHS_NUMBER_SYSTEM and ident.get("value") not in (None, ""):
            return _checked(ident.get("value"), f"{root}.identifier[{i}].value", row)
        local = local or _local_id(ident)
    if local is not None:
        return {"local_id": local}, []
    return None, [
        Problem(
            f"{root}.identifier",
            f"Patient has neither an NHS number (identifier system {FHIR_NHS_NUMBER_SYSTEM}) "
            "nor a local identifier with a system and a value",
            row,
        )
    ]


def _local_id(ident: Any) -> str | None:
    """``<system>|<value>`` of an identifier other than the NHS number (and not an ODS code)."""
    if not isinstance(ident, dict) or not ident.get("system") or ident.get("value") in (None, ""):
        return None
    if ident["system"] in (FHIR_NHS_NUMBER_SYSTEM, FHIR_ODS_ORGANISATION_SYSTEM):
        return None
    return f"{ident['system']}|{ident['value']}"


def identity(patient: dict[str, Any]) -> dict[str, str] | None:
    """The subject identity of a checked ``$patient``: ``{"system", "value"}`` as the events carry it."""
    if patient.get("nhs_number"):
        return {"system": "nhs-number", "value": patient["nhs_number"]}
    if patient.get("local_id"):
        return {"system": "other", "value": patient["local_id"]}
    return None


def build(
    resource: dict[str, Any], index: Index, root: str, row: int | None, previous: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[Problem]]:
    """The ``$`` context keys for ``resource`` and the problems found resolving them."""
    patient, problems = _patient(resource, index, root, row)
    service = _Describer(index, resource, root)
    for path in SERVICE_PATHS:
        if path == "requester" and resource.get("resourceType") == "ServiceRequest":
            continue
        for ref in resolve_all(resource, path):
            service.visit(ref)
    requester = _Describer(index, resource, root)
    for ref in resolve_all(resource, "requester"):
        requester.visit(ref)
    declined = [
        r
        for p in resolve_all(resource, "participant")
        if isinstance(p, dict) and p.get("status") == "declined"
        for r in [p.get("actor")]
        if isinstance(r, dict)
    ]
    location = next(
        (
            _name(t)
            for r in resolve_all(resource, "participant.actor")
            if (t := service.target(r)) is not None and t.get("resourceType") == "Location"
        ),
        None,
    )
    context: dict[str, Any] = {
        "$patient": patient,
        "$org": service.result(),
        "$practitioner": service.practitioner or None,
        "$requester": {**(requester.result() or {}), "practitioner": requester.practitioner or None},
        "$declined_by": _ref_type(declined[0], service.target(declined[0])) if declined else None,
        "$location": location,
        "$planned": planned(resource),
        "$previous": previous,
        "$rescheduled": _moved(previous, resource),
    }
    return context, problems


def planned(resource: dict[str, Any], now: datetime | None = None) -> Any:
    """The first of :data:`PLANNED_PATHS` found, no later than ``now`` (a value without a UTC offset
    is handed on as it is, for the mapping's time zone)."""
    for path in PLANNED_PATHS:
        for value in resolve_all(resource, path):
            try:
                when = to_datetime(value)
            except ValueError:
                return value
            return min(when, now or datetime.now(UTC)).isoformat()
    return None


def _moved(previous: dict[str, Any] | None, resource: dict[str, Any]) -> bool:
    """True when ``previous`` had a ``start`` and it differs from the resource's."""
    if not previous or not previous.get("start") or not resource.get("start"):
        return False
    try:
        return bool(to_datetime(previous["start"]) != to_datetime(resource["start"]))
    except ValueError:
        return bool(previous["start"] != resource["start"])
