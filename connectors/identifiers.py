"""Agency identifiers: validate, normalise and wrap them as :class:`hub.events.SubjectRef`.

Error messages never contain the identifier's value, only its kind and what is wrong with it.
"""

from __future__ import annotations

import re

from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.gb import nhs, upn

from hub.core.events import SubjectRef

#: FHIR identifier system of the NHS number (UK Core).
FHIR_NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
#: FHIR identifier system of ODS organisation codes.
FHIR_ODS_ORGANISATION_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"

_LA_PERSON_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_PSEUDONYM = re.compile(r"^s-[a-z2-7]{26}$")
#: Hub identifier system of a subject the hub already pseudonymised (a Patient it remembers by
#: reference, :mod:`connectors.health.directory`): the ingest service takes the value as the pseudonym.
PSEUDONYM_SYSTEM = "pseudonym"


class IdentifierError(ValueError):
    """An identifier failed validation. ``str(err)`` is safe to show: it holds no identifier value."""


def _reason(kind: str, exc: ValidationError) -> str:
    if isinstance(exc, InvalidLength):
        return f"{kind} identifier has the wrong length"
    if isinstance(exc, InvalidChecksum):
        check = "modulus-11 check" if kind == "nhs-number" else "modulus-23 check-letter test"
        return f"{kind} identifier fails the {check}"
    if isinstance(exc, InvalidComponent):
        return f"{kind} identifier has an unknown local-authority number"
    if isinstance(exc, InvalidFormat):
        return f"{kind} identifier has characters that are not allowed"
    return f"{kind} identifier is not valid"


def _text(kind: str, value: object) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise IdentifierError(f"{kind} identifier is missing")
    if not isinstance(value, str | int):
        raise IdentifierError(f"{kind} identifier must be a string")
    return "".join(str(value).split())


def normalise_nhs_number(value: object) -> str:
    """Return the 10-digit NHS number without spaces or dashes; raise :class:`IdentifierError`."""
    text = _text("nhs-number", value).replace("-", "")
    try:
        return str(nhs.validate(text))
    except ValidationError as exc:
        raise IdentifierError(_reason("nhs-number", exc)) from None


def normalise_upn(value: object) -> str:
    """Return the 13-character unique pupil number (upper case); raise :class:`IdentifierError`."""
    text = _text("upn", value).upper()
    try:
        return str(upn.validate(text))
    except ValidationError as exc:
        raise IdentifierError(_reason("upn", exc)) from None


def normalise_la_person_id(value: object) -> str:
    """Return a local-authority person id (1-64 of ``[A-Za-z0-9-]``); raise :class:`IdentifierError`."""
    text = _text("la-person-id", value)
    if not _LA_PERSON_ID.match(text):
        raise IdentifierError("la-person-id identifier has characters that are not allowed")
    return text


def normalise_local_id(value: object) -> str:
    """Return an agency-local identifier (``<identifier system>|<value>``, 1-300 characters)."""
    text = _text("other", value)
    if len(text) > 300:
        raise IdentifierError("other identifier is longer than 300 characters")
    return text


def normalise_pseudonym(value: object) -> str:
    """Return a hub pseudonym (``s-`` and 26 base32 letters); raise :class:`IdentifierError`."""
    text = _text(PSEUDONYM_SYSTEM, value)
    if not _PSEUDONYM.match(text):
        raise IdentifierError("pseudonym is not one the hub made")
    return text


_NORMALISERS = {
    "nhs-number": normalise_nhs_number,
    "upn": normalise_upn,
    "la-person-id": normalise_la_person_id,
    "other": normalise_local_id,
    PSEUDONYM_SYSTEM: normalise_pseudonym,
}

#: Hub identifier system for each agency identifier system name a mapping may use.
SYSTEM_ALIASES = {
    "nhs-number": "nhs-number",
    FHIR_NHS_NUMBER_SYSTEM: "nhs-number",
    "upn": "upn",
    "la-person-id": "la-person-id",
    "other": "other",
    PSEUDONYM_SYSTEM: PSEUDONYM_SYSTEM,
}


def subject_ref(system: str, value: object) -> SubjectRef:
    """Validate ``value`` as an identifier of ``system`` and return a normalised :class:`SubjectRef`."""
    hub_system = SYSTEM_ALIASES.get(system)
    if hub_system is None:
        raise IdentifierError(f"identifier system is not one the hub links ({', '.join(sorted(SYSTEM_ALIASES))})")
    return SubjectRef(system=hub_system, value=_NORMALISERS[hub_system](value))


def nhs_number(value: object) -> SubjectRef:
    """An NHS number subject (10 digits, modulus-11 check)."""
    return subject_ref("nhs-number", value)


def pupil_number(value: object) -> SubjectRef:
    """A unique pupil number subject (13 characters, modulus-23 check letter)."""
    return subject_ref("upn", value)


def la_person_id(value: object) -> SubjectRef:
    """A local-authority person id subject."""
    return subject_ref("la-person-id", value)

