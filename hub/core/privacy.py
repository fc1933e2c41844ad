"""The hub's one identifier scrubber: what an NHS number, UPN or date of birth looks like in free text.

Log lines (:mod:`hub.core.logging`), connector and batch problem messages (:mod:`connectors`) and
audit details (:mod:`hub.governance.audit`) are all checked against the same patterns:

* NHS numbers: ten digits, plain or grouped 3-3-4 with spaces or dashes (``943 476 5919``);
* unique pupil numbers: a letter, eleven digits and a final letter or digit (``C873123456700``),
  in either case;
* dates: a bare calendar date ``YYYY-MM-DD`` of the 1900s or 2000s (a timestamp, where a ``T`` or a
  time follows, is not a date of birth).

UUIDs and hex digests (16 or more hex characters and dashes, with at least one letter) are left
whole: an event id such as ``…-4a1b-9c3d-a123456789b0`` holds ten digits in a row by chance.
:data:`PERSONAL_KEYS` names the mapping keys whose values are personal data whatever they hold.
"""

from __future__ import annotations

import re
from typing import Any

#: Keys (compared in lower case) whose values are personal data: a log line or audit detail drops them.
PERSONAL_KEYS: frozenset[str] = frozenset(
    {"name", "given", "family", "surname", "forename", "birth_date", "birthdate", "dob", "date_of_birth",
     "nhs_number", "nhs", "upn", "address", "postcode", "phone", "email", "identifier_value"}
)
#: What :func:`scrub` puts in place of any identifier, and what a dropped personal key's value becomes.
REDACTED = "<redacted>"

NHS_NUMBER = re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)")
UPN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]\d{11}[0-9A-Za-z](?![A-Za-z0-9])")
DATE = re.compile(r"(?<!\d)(19|20)\d\d-[01]\d-[0-3]\d(?![\dT:])")
#: opaque ids the hub makes (UUIDs, hex digests): a run of digits inside one is not an identifier
OPAQUE_ID = re.compile(r"(?<![0-9A-Za-z-])(?=[0-9a-fA-F-]*[a-fA-F])[0-9a-fA-F][0-9a-fA-F-]{15,}(?![0-9A-Za-z-])")

#: Each identifier pattern with the label :func:`scrub_text` puts in its place, in the order applied.
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (NHS_NUMBER, "<nhs-number>"),
    (UPN, "<upn>"),
    (DATE, "<date>"),
)


def scrub_text(text: str, placeholder: str | None = None) -> str:
    """Replace anything shaped like an NHS number, UPN or bare calendar date.

    Each is replaced by a label naming its kind (``<nhs-number>``, ``<upn>``, ``<date>``), or by
    ``placeholder`` when one is given. UUIDs and hex digests are left whole.
    """
    if not any(c.isdigit() for c in text):
        return text
    out: list[str] = []
    last = 0
    for m in OPAQUE_ID.finditer(text):
        out += [_scrub_plain(text[last:m.start()], placeholder), m.group()]
        last = m.end()
    if not out:
        return _scrub_plain(text, placeholder)
    out.append(_scrub_plain(text[last:], placeholder))
    return "".join(out)


def pseudonymous(text: str) -> bool:
    """Whether ``text`` (an id the hub is given, such as a token's subject) holds nothing shaped like an NHS
    number, UPN or date of birth, so it may name someone where only pseudonymous ids are kept."""
    return scrub_text(text) == text


def scrub(text: str) -> str:
    """:func:`scrub_text` with every identifier replaced by ``<redacted>`` (for problem messages)."""
    return scrub_text(text, REDACTED)


def scrub_value(value: Any) -> Any:
    """Scrub a value and everything inside it: strings, and the values of dicts, lists and tuples.

    A dict entry whose key is one of :data:`PERSONAL_KEYS` has its value replaced by ``<redacted>``.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in PERSONAL_KEYS else scrub_value(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def _scrub_plain(text: str, placeholder: str | None) -> str:
    for pattern, label in PATTERNS:
        text = pattern.sub(placeholder or label, text)
    return text
