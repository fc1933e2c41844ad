"""Shape limits every input meets before it is parsed: JSON nesting depth and Avro integer range.

A JSON document nested thousands of levels deep makes a recursive parser (``json.loads``, pydantic)
exhaust the stack; :func:`json_depth` measures the nesting without parsing, on bytes or text, in
time linear in the payload and without recursion. Messages name the limit, never the content.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import accumulate

#: deepest JSON nesting (objects and arrays) any route or file accepts; FHIR resources need about 12
MAX_JSON_DEPTH = 64
#: the range of an Avro ``long`` (and of the database's BIGINT): |n| < 2**63
LONG_MAX = 2**63 - 1
LONG_MIN = -(2**63)

_STRING_TEXT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STEP_TEXT = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_BRACKETS_TEXT = re.compile(r"[\[\]{}]")
_BRACKETS_BYTES = re.compile(rb"[\[\]{}]")

DEPTH_RULE = f"JSON nests deeper than {MAX_JSON_DEPTH} levels"


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not count)."""
    if isinstance(data, str):
        brackets = "".join(_BRACKETS_TEXT.findall(_STRING_TEXT.sub("", data)))
        steps = (_STEP_TEXT[ord(c)] for c in brackets)
    else:
        brackets_b = b"".join(_BRACKETS_BYTES.findall(_STRING_BYTES.sub(b"", data)))
        steps = (_STEP_TEXT[c] for c in brackets_b)
    return max(accumulate(steps, initial=0))


def too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests deeper than ``limit`` (cheap when it has few brackets)."""
    if len(data) <= limit:
        return False
    return json_depth(data) > limit


def in_long_range(value: int) -> bool:
    return LONG_MIN <= value <= LONG_MAX


def unholdable(text: str, allowed: str = "") -> bool:
    """Whether text holds a control character (other than those ``allowed``) or a lone surrogate: what no
    id holds, the records' encoding refuses and PostgreSQL refuses in text (NUL)."""
    return any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in text)


def ascii_digits(text: str) -> bool:
    """Whether text is a whole number in ASCII digits (``str.isdigit`` alone also takes ``²`` and other
    scripts' digits, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def row_id(text: str) -> int | None:
    """A database row id given as text (a path segment, a header), or None when it is not one: only ASCII
    digits (``str.isdigit`` also takes ``²`` and other scripts' digits, which ``int`` refuses) and no larger
    than the database's BIGINT."""
    if not ascii_digits(text) or len(text) > len(str(LONG_MAX)):
        return None
    value = int(text)
    return value if value <= LONG_MAX else None
