"""Free text kept in audit records, sealed: a link reason, an investigation reason.

What a caller typed can hold anything (a name, an NHS number, a date of birth), so it never goes into
the hash-chained trail in clear and is never scrubbed into a refused record. :func:`seal_text` seals
it under a subject's data key (:mod:`hub.wire.sealing`, keys in :mod:`hub.db.keyvault`) and the record
holds ``{"sealed": "<base64 frame>"}``: the chain hashes the ciphertext, and shredding the subject's
keys (an erasure) leaves the record in place, verifiable and unreadable. :func:`open_detail` opens
the sealed values of a detail for an authorised reader (the IG routes); a shredded key reads as
``"[erased]"``.

Which key: a link or unlink reason is sealed under the linked identifier's pseudonym, so erasing the
person shreds it with the rest of their records; an investigation reason under
``audit-reason:<household id>`` (or ``audit-reason:<officer>`` when the route names no household).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any

from hub.core.errors import ErasedRecordError, UnsealError
from hub.wire.sealing import KeyVault, open_frame, parse_frame, seal

SEALED = "sealed"
ERASED = "[erased]"
UNREADABLE = "[unreadable]"


def reason_subject(household_id: str | None, actor: str) -> str:
    """The key an investigation reason is sealed under."""
    return f"audit-reason:{household_id or actor}"[:255]


def seal_text(vault: KeyVault, subject: str, text: str) -> dict[str, str]:
    """``text`` sealed under ``subject``'s current data key, as a detail value."""
    frame = seal(vault.current(subject), str(uuid.uuid4()), text.encode("utf-8"))
    return {SEALED: base64.b64encode(frame).decode("ascii")}


def is_sealed_value(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {SEALED} and isinstance(value[SEALED], str)


def open_text(vault: KeyVault, value: Mapping[str, str]) -> str:
    """The plain text of a sealed value; ``[erased]`` once its key was shredded."""
    try:
        frame = parse_frame(base64.b64decode(value[SEALED], validate=True))
        return open_frame(vault.get(frame.subject, frame.key_version), frame).decode("utf-8")
    except ErasedRecordError:
        return ERASED
    except (UnsealError, binascii.Error, UnicodeDecodeError):
        return UNREADABLE


def open_detail(vault: KeyVault, detail: Any) -> Any:
    """A copy of ``detail`` with every sealed value opened."""
    if is_sealed_value(detail):
        return open_text(vault, detail)
    if isinstance(detail, Mapping):
        return {k: open_detail(vault, v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [open_detail(vault, v) for v in detail]
    return detail
