"""The family's "tell it once" summary of a child: what the child needs, how they communicate, who is
involved, written once by a parent (or by a young person about themself) so nobody has to tell it again. Once the
young person has written it, it is theirs: their parents still read it, but only they change it.

The family chooses whether it is shared with the child's coordinator and the agencies in the team around
the child; who may read it is decided where it is read (the API and the pages), from :attr:`Summary.shared`.
The text is what a person typed and can hold anything, so it is never stored in clear: it is sealed
(:mod:`hub.wire.sealing`) under the child's own summary key, ``summary:<child id>`` (:func:`key_subject`),
kept in the key vault like every subject's key. Erasing the child shreds that key with the child's other
keys and deletes the row (``child_summaries`` is tagged in :mod:`hub.db.schema`). Each change of the text
or of the sharing choice writes a ``summary_change`` audit record in the same transaction, with which
parts changed and whether it is shared; never the text.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from hub.core.errors import ForbiddenError, NotFoundError, Problem, ValidationError
from hub.db.schema import child_summaries
from hub.db.store import Store, as_utc, utcnow
from hub.governance.audit import AuditEntry, AuditLog
from hub.stream import readmodel
from hub.wire.sealing import KeyVault, open_frame, parse_frame, seal

#: the parts of a summary, in the order a page asks for them
FIELDS = ("needs", "communication", "involved")
#: characters per part: a summary, not a record
MAX_CHARS = 2000
S = child_summaries.c

@dataclass(frozen=True)
class Summary:
    child_id: str
    household_id: str
    needs: str
    communication: str
    involved: str
    shared: bool
    written_by: str
    written_role: str
    updated_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {"child_id": self.child_id, "household_id": self.household_id, "needs": self.needs,
                "communication": self.communication, "involved": self.involved, "shared": self.shared,
                "written_by_role": self.written_role, "updated_at": self.updated_at.isoformat()}


def key_subject(child_id: str) -> str:
    """The key a child's summary is sealed under."""
    return f"summary:{child_id}"[:80]


def checked(parts: dict[str, str | None]) -> dict[str, str]:
    """The parts trimmed; ValidationError naming each part too long (never repeating it) or all empty."""
    text = {f: (parts.get(f) or "").strip() for f in FIELDS}
    problems = [Problem(f, f"at most {MAX_CHARS} characters") for f in FIELDS if len(text[f]) > MAX_CHARS]
    if not any(text.values()):
        problems.append(Problem("needs", "write at least one part of the summary"))
    if problems:
        raise ValidationError(problems, title="Summary not saved")
    return text


def _seal(vault: KeyVault, child_id: str, text: dict[str, str]) -> str:
    frame = seal(vault.current(key_subject(child_id)), str(uuid.uuid4()), json.dumps(text).encode("utf-8"))
    return base64.b64encode(frame).decode("ascii")


def _open(vault: KeyVault, sealed: str) -> dict[str, str]:
    frame = parse_frame(base64.b64decode(sealed, validate=True))
    data = json.loads(open_frame(vault.get(frame.subject, frame.key_version), frame).decode("utf-8"))
    return {f: str(data.get(f) or "") for f in FIELDS}


def read(store: Store, vault: KeyVault, household_id: str, child_id: str) -> Summary | None:
    """The child's summary, opened; None if the family has not written one."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(child_summaries).where(S.child_id == child_id,
                                                            S.household_id == household_id)).first()
    if row is None:
        return None
    text = _open(vault, row.sealed)
    return Summary(row.child_id, row.household_id, text["needs"], text["communication"], text["involved"],
                   bool(row.shared), row.written_by, row.written_role, as_utc(row.updated_at))


def shared_children(store: Store, household_id: str) -> set[str]:
    """The children of a household whose summary the family shares (no key is opened)."""
    with store.engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(S.child_id).where(S.household_id == household_id,
                                                                       S.shared.is_(True)))}


def write(store: Store, vault: KeyVault, household_id: str, child_id: str, parts: dict[str, str | None], *,
          shared: bool, actor: str, role: str, source: str | None = None) -> dict[str, object]:
    """Write (or rewrite) the summary and the sharing choice; one audit record in the same transaction when
    anything changed. 404 for a child not in the household; 422 naming the part for bad text."""
    text = checked(parts)
    if child_id not in readmodel.children(store, household_id):
        raise NotFoundError("no such child in this household")
    before = read(store, vault, household_id, child_id)
    if before is not None and before.written_role == "young_person" and role != "young_person":
        raise ForbiddenError("the young person wrote this summary about themself; only they can change it")
    old = {f: getattr(before, f) for f in FIELDS} if before is not None else dict.fromkeys(FIELDS, "")
    changed = [f for f in FIELDS if old[f] != text[f]]
    sharing_changed = before is None or before.shared != shared
    if not changed and not sharing_changed:
        return {"child_id": child_id, "shared": shared, "status": "unchanged"}
    sealed = _seal(vault, child_id, text)  # before the write lock: a first key is written in its own transaction
    now = utcnow()
    values = {"household_id": household_id, "subject": key_subject(child_id), "sealed": sealed, "shared": shared,
              "written_by": actor, "written_role": role, "updated_at": now}
    if sharing_changed:
        values["shared_changed_at"] = now
    with store.engine.begin() as conn:
        if before is None:
            conn.execute(child_summaries.insert().values(child_id=child_id, **values))
        else:
            conn.execute(child_summaries.update().where(S.child_id == child_id).values(**values))
        AuditLog(store).record_in(conn, AuditEntry(
            "summary_change", actor=actor, actor_role=role, subject_household=household_id, subject_child=child_id,
            data_ref=f"summary:{child_id}", purpose="family_request",
            detail={"changed": changed, "shared": shared, "sharing_changed": sharing_changed,
                    "first": before is None}, source=source))
    return {"child_id": child_id, "shared": shared, "status": "written" if before is None else "changed",
            "changed": changed, "sharing_changed": sharing_changed}
