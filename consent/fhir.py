"""FHIR R4 Consent import / export for directives (validated with ``fhir.resources.R4B``).

Mapping (see also the package docstring):

====================  ===========================================================================
Directive             Consent
====================  ===========================================================================
id                    identifier[0] (system ``urn:family-hub:directive``); also ``id`` if FHIR-valid.
                      On import without that identifier (a Consent an agency's own system made), the
                      Consent's ``id`` as it stands: the caller scopes it to the sending agency
child_id              patient = ``Patient/<pseudonym>``; on import also a patient given only by
                      ``reference.identifier`` (NHS number): its value, for the caller to resolve
made_by / role        performer[0] = ``RelatedPerson/<id>`` (parent), ``Patient/<id>`` (young person) or
                      ``Organization/<id>`` (the local authority as a looked-after child's corporate parent)
made_at               dateTime
withdrawn_at          status ``inactive`` + extension ``.../consent-withdrawn-at`` (else ``active``)
confirmed_by_yp_at    extension ``.../consent-confirmed-by-young-person-at``
decision              provision.type permit | deny; policyRule v3-ActCode OPTIN | OPTOUT
scope.period          provision.period (validity)
scope.data_period     provision.dataPeriod
agency_ids            actor IRCP -> ``Organization/<id>``
professional_ids      actor IRCP -> ``Practitioner/<id>``
services / roles      actor IRCP -> identifier reference, system ``urn:family-hub:service`` / ``:role``
sectors               actor IRCP -> identifier reference, system ``urn:family-hub:sector``
purposes              provision.purpose (v3-ActReason: TREAT, COC, HLEGAL, THREAT, FAMRQT)
categories            provision.securityLabel (v3-ActCode PSY / SEX / SDV / SOC, else family-hub codes)
exceptions            nested provision.provision (recursively)
====================  ===========================================================================

Every reference carries a pseudonymous id only; ids must be valid FHIR ids ([A-Za-z0-9-.]{1,64}).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from consent.directives import Directive, Period, Provision, Scope
from consent.errors import FhirMappingError
from consent.model import Category, DirectiveDecision, Grantor, Purpose, Sector

try:  # fhir.resources is a dependency of the project; keep the import error readable
    from fhir.resources.R4B.consent import Consent
except ImportError as _exc:  # pragma: no cover
    raise FhirMappingError("fhir.resources is required for consent.fhir") from _exc

SYS_DIRECTIVE = "urn:family-hub:directive"
SYS_NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
SYS_SERVICE = "urn:family-hub:service"
SYS_ROLE = "urn:family-hub:role"
SYS_SECTOR = "urn:family-hub:sector"
SYS_CATEGORY = "urn:family-hub:category"
SYS_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SYS_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SYS_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SYS_CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
SYS_LOINC = "http://loinc.org"
EXT_WITHDRAWN = "https://family-hub.example/fhir/StructureDefinition/consent-withdrawn-at"
EXT_CONFIRMED = "https://family-hub.example/fhir/StructureDefinition/consent-confirmed-by-young-person-at"

PURPOSE_CODES: dict[Purpose, str] = {
    Purpose.DIRECT_CARE: "TREAT",  # treatment
    Purpose.CARE_COORDINATION: "COC",  # coordination of care
    Purpose.EHC_NEEDS_ASSESSMENT: "HLEGAL",  # legal requirement (SEND Regs 2014 reg 6/8)
    Purpose.SAFEGUARDING: "THREAT",  # prevent or lessen a serious threat to health or safety
    Purpose.FAMILY_COPY: "FAMRQT",  # family requested
}
_PURPOSE_BY_CODE = {code: p for p, code in PURPOSE_CODES.items()}

CATEGORY_CODES: dict[Category, tuple[str, str]] = {
    Category.GENERAL: (SYS_CATEGORY, "general"),
    Category.CLINICAL: (SYS_CATEGORY, "clinical"),
    Category.EDUCATION: (SYS_CATEGORY, "education"),
    Category.CHILD_PROTECTION: (SYS_CATEGORY, "child_protection"),
    Category.SOCIAL_CARE: (SYS_ACT_CODE, "SOC"),
    Category.MENTAL_HEALTH: (SYS_ACT_CODE, "PSY"),
    Category.SEXUAL_HEALTH: (SYS_ACT_CODE, "SEX"),
    Category.DOMESTIC_ABUSE: (SYS_ACT_CODE, "SDV"),
}
_CATEGORY_BY_CODE = {code: c for c, code in CATEGORY_CODES.items()}

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_IRCP = {"coding": [{"system": SYS_PARTICIPATION, "code": "IRCP"}]}


def _fid(value: str, what: str) -> str:
    if not _FHIR_ID.match(value):
        raise FhirMappingError(
            f"{what} must be a pseudonymous FHIR id ([A-Za-z0-9-.], at most 64 characters)"
        )
    return value


def _dt(value: datetime) -> str:
    return value.isoformat()


def _period(p: Period) -> dict[str, str]:
    out: dict[str, str] = {}
    if p.start is not None:
        out["start"] = _dt(p.start)
    if p.end is not None:
        out["end"] = _dt(p.end)
    return out


def _ident_actor(ref_type: str, system: str, value: str) -> dict[str, Any]:
    return {"role": _IRCP, "reference": {"type": ref_type, "identifier": {"system": system, "value": value}}}


def _provision(
    decision: DirectiveDecision, scope: Scope, exceptions: tuple[Provision, ...]
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": decision.value}
    if scope.period is not None:
        out["period"] = _period(scope.period)
    if scope.data_period is not None:
        out["dataPeriod"] = _period(scope.data_period)
    actors: list[dict[str, Any]] = []
    for a in sorted(scope.agency_ids or ()):
        actors.append({"role": _IRCP, "reference": {"reference": f"Organization/{_fid(a, 'an agency id')}"}})
    for pid in sorted(scope.professional_ids or ()):
        ref = f"Practitioner/{_fid(pid, 'a professional id')}"
        actors.append({"role": _IRCP, "reference": {"reference": ref}})
    actors += [_ident_actor("HealthcareService", SYS_SERVICE, s) for s in sorted(scope.services or ())]
    actors += [_ident_actor("PractitionerRole", SYS_ROLE, r) for r in sorted(scope.roles or ())]
    actors += [_ident_actor("Organization", SYS_SECTOR, s.value) for s in sorted(scope.sectors or ())]
    if actors:
        out["actor"] = actors
    if scope.purposes is not None:
        out["purpose"] = [
            {"system": SYS_ACT_REASON, "code": PURPOSE_CODES[p]} for p in sorted(scope.purposes)
        ]
    if scope.categories is not None:
        out["securityLabel"] = [
            {"system": CATEGORY_CODES[c][0], "code": CATEGORY_CODES[c][1]} for c in sorted(scope.categories)
        ]
    if exceptions:
        out["provision"] = [_provision(e.decision, e.scope, e.exceptions) for e in exceptions]
    return out


#: who made a directive, as the Consent's performer: a parent, the young person, or the local authority
#: that is a looked-after child's corporate parent
_PERFORMER_TYPES = {Grantor.PARENT: "RelatedPerson", Grantor.YOUNG_PERSON: "Patient",
                    Grantor.CORPORATE_PARENT: "Organization"}


def directive_to_fhir_dict(directive: Directive) -> dict[str, Any]:
    """The FHIR R4 Consent JSON (as a dict) for ``directive``; validated before it is returned."""
    return to_fhir(directive).model_dump(mode="json", exclude_none=True)


def to_fhir(directive: Directive) -> Consent:
    """Convert a directive to a validated ``fhir.resources.R4B.consent.Consent``."""
    d = directive
    performer_type = _PERFORMER_TYPES[d.made_by_role]
    data: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "inactive" if d.withdrawn_at is not None else "active",
        "scope": {"coding": [{"system": SYS_CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": SYS_LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "identifier": [{"system": SYS_DIRECTIVE, "value": d.id}],
        "patient": {"reference": f"Patient/{_fid(d.child_id, 'the child id')}"},
        "dateTime": _dt(d.made_at),
        "performer": [{"reference": f"{performer_type}/{_fid(d.made_by, 'the author id')}"}],
        "policyRule": {
            "coding": [
                {
                    "system": SYS_ACT_CODE,
                    "code": "OPTIN" if d.decision is DirectiveDecision.PERMIT else "OPTOUT",
                }
            ]
        },
        "provision": _provision(d.decision, d.scope, d.exceptions),
    }
    if _FHIR_ID.match(d.id):
        data["id"] = d.id
    extensions = []
    if d.withdrawn_at is not None:
        extensions.append({"url": EXT_WITHDRAWN, "valueDateTime": _dt(d.withdrawn_at)})
    if d.confirmed_by_young_person_at is not None:
        extensions.append({"url": EXT_CONFIRMED, "valueDateTime": _dt(d.confirmed_by_young_person_at)})
    if extensions:
        data["extension"] = extensions
    try:
        return Consent.model_validate(data)
    except ValidationError as exc:
        raise FhirMappingError(f"directive {d.id} does not make a valid FHIR Consent: {_rules(exc)}") from None


def _rules(exc: ValidationError) -> str:
    """Which fields broke which rule, never the refused value (pydantic's own text quotes the input): a
    field the sender made up is reported without its name."""
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        if e["type"] == "extra_forbidden":
            out.append(".".join(loc[:-1]) + ": a field that is not part of a FHIR Consent")
        elif e["type"] in ("value_error", "assertion_error"):
            out.append(".".join(loc) + ": " + re.sub(r"'[^']*'|\"[^\"]*\"", "(the value)", e["msg"]))
        else:
            out.append(".".join(loc) + ": " + e["msg"])
    return "; ".join(out)


# -- import ------------------------------------------------------------------------------------------


def _aware_dt(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise FhirMappingError(f"{what} must be a full dateTime with a time zone")
    if value.tzinfo is None:
        raise FhirMappingError(f"{what} must carry a time zone")
    return value


def _from_period(p: Any, what: str) -> Period | None:
    if p is None:
        return None
    start = _aware_dt(p.start, f"{what} start") if p.start is not None else None
    end = _aware_dt(p.end, f"{what} end") if p.end is not None else None
    return Period(start, end)


def _ref_id(reference: str, expected: str, what: str) -> str:
    prefix = f"{expected}/"
    if not reference.startswith(prefix):
        raise FhirMappingError(f"{what} must reference a {expected}")
    return reference[len(prefix) :]


def _patient(patient: Any) -> str:
    """The child a Consent is about: the id of its ``Patient/<id>`` reference, or the NHS number its
    ``reference.identifier`` gives (the caller resolves it to a child; it is never echoed in errors)."""
    if patient is not None and patient.reference:
        return _ref_id(patient.reference, "Patient", "Consent.patient")
    ident = patient.identifier if patient is not None else None
    if ident is not None and ident.value:
        if ident.system != SYS_NHS_NUMBER:
            raise FhirMappingError(f"Consent.patient.identifier must be an NHS number ({SYS_NHS_NUMBER})")
        return str(ident.value)
    raise FhirMappingError("the consent needs a patient: a Patient reference or the child's NHS number")


def _scope_from(prov: Any) -> Scope:
    agencies: set[str] = set()
    professionals: set[str] = set()
    services: set[str] = set()
    roles: set[str] = set()
    sectors: set[Sector] = set()
    for actor in prov.actor or ():
        ref = actor.reference
        if ref.reference:
            kind, _, ident = ref.reference.partition("/")
            if kind == "Organization":
                agencies.add(ident)
            elif kind == "Practitioner":
                professionals.add(ident)
            else:
                raise FhirMappingError("provision.actor.reference: only Organization and Practitioner actors "
                                       "are supported")
        elif ref.identifier is not None:
            system, value = ref.identifier.system, ref.identifier.value
            if system == SYS_SERVICE:
                services.add(value)
            elif system == SYS_ROLE:
                roles.add(value)
            elif system == SYS_SECTOR:
                try:
                    sectors.add(Sector(value))
                except ValueError:
                    raise FhirMappingError("provision.actor.identifier: not a sector code the hub knows "
                                           f"({', '.join(s.value for s in Sector)})") from None
            else:
                raise FhirMappingError("provision.actor.identifier.system: not an actor identifier system the "
                                       "hub supports")
        else:
            raise FhirMappingError("a provision actor needs a reference or an identifier")
    purposes: set[Purpose] = set()
    for coding in prov.purpose or ():
        if coding.system != SYS_ACT_REASON or coding.code not in _PURPOSE_BY_CODE:
            raise FhirMappingError("provision.purpose: not a purpose code the hub supports")
        purposes.add(_PURPOSE_BY_CODE[coding.code])
    categories: set[Category] = set()
    for coding in prov.securityLabel or ():
        key = (coding.system, coding.code)
        if key not in _CATEGORY_BY_CODE:
            raise FhirMappingError("provision.securityLabel: not a security label the hub supports")
        categories.add(_CATEGORY_BY_CODE[key])
    return Scope(
        agency_ids=frozenset(agencies) or None,
        sectors=frozenset(sectors) or None,
        services=frozenset(services) or None,
        roles=frozenset(roles) or None,
        professional_ids=frozenset(professionals) or None,
        categories=frozenset(categories) or None,
        purposes=frozenset(purposes) or None,
        data_period=_from_period(prov.dataPeriod, "provision.dataPeriod"),
        period=_from_period(prov.period, "provision.period"),
    )


def _decision(prov: Any) -> DirectiveDecision:
    if prov.type not in ("permit", "deny"):
        raise FhirMappingError("every provision needs type permit or deny")
    return DirectiveDecision(prov.type)


def _exceptions(prov: Any) -> tuple[Provision, ...]:
    return tuple(Provision(_decision(p), _scope_from(p), _exceptions(p)) for p in prov.provision or ())


def from_fhir(resource: Consent | dict[str, Any]) -> Directive:
    """Convert a FHIR R4 Consent (model or JSON dict) back to a :class:`Directive`."""
    if isinstance(resource, dict):
        try:
            resource = Consent.model_validate(resource)
        except ValidationError as exc:
            raise FhirMappingError(f"not a valid FHIR R4 Consent: {_rules(exc)}") from None
    c = resource
    if c.status not in ("active", "inactive"):
        raise FhirMappingError("Consent.status: only active or inactive consents map to directives")
    ids = [i.value for i in c.identifier or () if i.system == SYS_DIRECTIVE and i.value]
    if not ids and c.id:
        ids = [c.id]  # an agency's own Consent: its id, scoped to the agency by the caller
    if not ids:
        raise FhirMappingError(f"the consent has neither an identifier in system {SYS_DIRECTIVE} nor an id")
    child_id = _patient(c.patient)
    if not c.performer or not c.performer[0].reference:
        raise FhirMappingError("the consent needs a performer (parent or young person)")
    perf_kind, _, made_by = c.performer[0].reference.partition("/")
    roles = {kind: grantor for grantor, kind in _PERFORMER_TYPES.items()}
    if perf_kind not in roles:
        raise FhirMappingError("Consent.performer must reference a RelatedPerson, a Patient or an Organization "
                               "(the corporate parent)")
    if c.dateTime is None:
        raise FhirMappingError("Consent.dateTime (when the directive was made) is required")
    if c.provision is None:
        raise FhirMappingError("Consent.provision is required")
    ext = {e.url: e.valueDateTime for e in c.extension or ()}
    withdrawn = _aware_dt(ext[EXT_WITHDRAWN], "withdrawn-at") if EXT_WITHDRAWN in ext else None
    if (withdrawn is not None) != (c.status == "inactive"):
        raise FhirMappingError(
            "an inactive consent needs a withdrawn-at extension (and only an inactive one)"
        )
    confirmed = _aware_dt(ext[EXT_CONFIRMED], "confirmed-at") if EXT_CONFIRMED in ext else None
    return Directive(
        id=ids[0],
        child_id=child_id,
        made_by=made_by,
        made_by_role=roles[perf_kind],
        made_at=_aware_dt(c.dateTime, "Consent.dateTime"),
        decision=_decision(c.provision),
        scope=_scope_from(c.provision),
        exceptions=_exceptions(c.provision),
        withdrawn_at=withdrawn,
        confirmed_by_young_person_at=confirmed,
    )
