"""What a delivery carries (``deliveries.payload``), sealed at rest under the child's data key.

A payload is a copy of information about a child (a report's title and reference, the family's copy), so it
is sealed like the timeline it comes from (:mod:`hub.db.sealed`), with the delivery's id as the row and the
child's member key (:func:`hub.db.sealed.member_key`): erasing the child shreds every copy the hub keeps.
Payloads are written and read here only; once the key is shredded a payload reads as :data:`ERASED`.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Connection

from hub.db.schema import deliveries
from hub.db.sealed import Sealer, member_key, sealer_of

P = deliveries.c.payload
#: an erased child's payload: what readers that look for the information find instead
ERASED: dict[str, Any] = {"erased": True, "information": {}}


def dump(body: dict[str, Any]) -> str:
    """The payload's canonical JSON (what is sent, and compared with what was sent)."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def seal(seal_with: Sealer, delivery_id: str, child_id: str, text: str) -> str:
    return seal_with.seal(P, delivery_id, member_key(child_id), text)


def sealed_rows(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New ``deliveries`` rows with their payloads sealed (keys read or made in ``conn``'s transaction)."""
    with_key = sealer_of(conn)
    with_key.prefetch_current({member_key(r["child_id"]) for r in rows})
    return [{**r, "payload": seal(with_key, r["delivery_id"], r["child_id"], r["payload"])} for r in rows]


def text(seal_with: Sealer, delivery_id: str, value: str) -> str:
    """The payload's JSON text (``{"erased": true, ...}`` once the child's key was shredded)."""
    return seal_with.text(P, delivery_id, value, erased=dump(ERASED))


def body(seal_with: Sealer, delivery_id: str, value: str) -> dict[str, Any]:
    opened: dict[str, Any] = json.loads(text(seal_with, delivery_id, value))
    return opened
