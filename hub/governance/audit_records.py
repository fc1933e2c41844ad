"""What the audit log holds: its actions, records, anchors and verification problems, and the hash
that chains the records (see :mod:`hub.governance.audit` for the chain and how it is verified)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from hub.core.privacy import PERSONAL_KEYS, scrub_text
from hub.db.store import as_utc

GENESIS = "0" * 64
HASH_VERSION = 1

#: Every action the audit log accepts, with what it means. Extend with :func:`register_action`.
ACTIONS: dict[str, str] = {
    "share": "information about a child was sent to a recipient (report, timeline extract, event)",
    "withhold": "information was not shared (no consent, rule refused, sensitive category)",
    "hold": "sharing was paused pending a decision (e.g. awaiting consent or review)",
    "release": "a held item was released for sharing",
    "override": "a safeguarding override shared or revealed information without the usual consent",
    "override_expired": "a safeguarding override ended: the child's sharing was decided again without it "
                        "(detail: override id, recipient, end)",
    "override_review": "an IG/safeguarding lead reviewed an override (data_ref = audit:<seq>)",
    "consent_change": "a consent was given, changed or withdrawn",
    "consent_recorded": "an agency recorded a consent (detail: the agency, and whether it may record consent)",
    "ingest_refused": "an agency's events were refused for claiming another identity (detail: agency and rule)",
    "identity_link": "a source subject was linked to a child / household",
    "identity_unlink": "such a link was removed",
    "identity_move": "a linked subject was moved to another child (detail: both households and children)",
    "corporate_parent": "a looked-after child's local authority was recorded (or cleared) as corporate parent "
                        "(detail: the agency id now and before)",
    "cancel": "a queued share or notice was cancelled before it went, or closed in doubt (detail: why, and the "
              "refusing decision where there is one)",
    "withdrawal_notice": "a recipient holding a copy (or who may hold one) was sent a notice that consent no longer "
                         "covers it",
    "recall": "a copy shared from a link undone as wrong was recalled (a recall notice, or the family copy withdrawn)",
    "summary_change": "a family's summary of a child was written or changed, or its sharing with the child's team "
                      "changed (detail: the parts changed, whether it is shared; never the text)",
    "read_timeline": "a family timeline was viewed",
    "read_report": "a report was viewed or downloaded",
    "export": "records were exported in bulk (including audit exports)",
    "erasure": "data was erased (right to erasure, retention)",
    "login_denied": "a sign-in or access attempt was refused",
}
READ_ACTIONS = frozenset({"read_timeline", "read_report"})
SEEN_ACTIONS = READ_ACTIONS | {"share"}
WITHHELD_ACTIONS = frozenset({"withhold", "hold"})

Kind = Literal["ALTERED", "DELETED", "REORDERED", "INSERTED",
               "TRUNCATED", "FORGED", "APPENDED", "CHECKPOINT_MISSING", "CHECKPOINT_INVALID"]
#: the chain's own kinds, then those found against signed checkpoints (:mod:`hub.governance.checkpoint_verify`)
KINDS: tuple[Kind, ...] = ("ALTERED", "DELETED", "REORDERED", "INSERTED",
                           "TRUNCATED", "FORGED", "APPENDED", "CHECKPOINT_MISSING", "CHECKPOINT_INVALID")


def register_action(name: str, description: str) -> None:
    """Allow a new action name (lower-case, ``[a-z_]``); re-registering the same name is fine."""
    if not name or not name.replace("_", "").isalpha() or not name.islower() or len(name) > 40:
        raise ValueError(f"audit action names are lower-case letters and underscores, got {name!r}")
    ACTIONS[name] = description


# ---- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditEntry:
    """What a caller asks to record; the log adds seq, recorded_at and the hashes."""

    action: str
    actor: str
    actor_role: str = ""
    subject_household: str | None = None
    subject_child: str | None = None
    data_ref: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    detail: Mapping[str, Any] | None = None
    source: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    recorded_at: datetime
    actor: str
    actor_role: str
    action: str
    subject_household: str | None
    subject_child: str | None
    data_ref: str | None
    purpose: str | None
    legal_basis: str | None
    detail: dict[str, Any]
    source: str | None
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    anchored_at: datetime


@dataclass(frozen=True)
class AuditProblem:
    seq: int
    kind: Kind
    message: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind}: {self.message}"


@dataclass
class VerifyReport:
    records: int
    problems: list[AuditProblem] = field(default_factory=list)
    anchors_checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    #: filled in by :func:`hub.governance.checkpoint_verify.check`: trusted checkpoints compared, the seq
    #: the latest covers, how many records come after it, and the places read
    checkpoints_checked: int = 0
    covered_to: int = 0
    uncovered: int = 0
    checkpoint_sources: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[tuple[int, str]]:
        """{(seq, kind)} — handy in tests and for summaries."""
        return {(p.seq, p.kind) for p in self.problems}

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.records} records"
        return "\n".join(str(p) for p in self.problems)


def iso_utc(value: datetime) -> str:
    return as_utc(value).astimezone(UTC).isoformat(timespec="microseconds")


def canonical_detail(detail: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def compute_hash(fields: Mapping[str, Any], prev_hash: str) -> str:
    """SHA-256 hex over the canonical JSON of a record's hashed fields and the previous hash.

    ``fields`` holds ``recorded_at`` (datetime or ISO string), the text columns and ``detail`` as the
    stored JSON text.
    """
    at = fields["recorded_at"]
    doc = {
        "v": HASH_VERSION,
        "recorded_at": iso_utc(at) if isinstance(at, datetime) else str(at),
        "actor": fields["actor"], "actor_role": fields["actor_role"], "action": fields["action"],
        "subject_household": fields["subject_household"], "subject_child": fields["subject_child"],
        "data_ref": fields["data_ref"], "purpose": fields["purpose"], "legal_basis": fields["legal_basis"],
        "detail": fields["detail"], "source": fields["source"], "prev_hash": prev_hash,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_detail(detail: Any, path: str = "detail") -> None:
    """Refuse personal identifiers in a detail object (ValueError naming the path, never the value)."""
    if isinstance(detail, Mapping):
        if set(detail) == {"sealed"} and isinstance(detail["sealed"], str):
            return  # ciphertext (hub.governance.audit_seal)
        for key, value in detail.items():
            k = str(key)
            if k.lower() in PERSONAL_KEYS or scrub_text(k) != k:
                raise ValueError(f"audit {path}: key {scrub_text(k)!r} names personal data; audit details "
                                 "must not hold personal identifiers")
            check_detail(value, f"{path}.{k}")
    elif isinstance(detail, list | tuple):
        for i, value in enumerate(detail):
            check_detail(value, f"{path}[{i}]")
    elif isinstance(detail, str) and scrub_text(detail) != detail:
        raise ValueError(f"audit {path} looks like it holds an NHS number, UPN or date of birth; audit details "
                         "must not hold personal identifiers (use pseudonymous ids and full timestamps)")
