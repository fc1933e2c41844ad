"""Information-governance queries over the audit log: who has seen a family's data, what was
withheld, safeguarding overrides and their reviews, consent history, and the family's own view."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.core.errors import ValidationError
from hub.db.store import Store
from hub.governance.audit import AuditLog
from hub.governance.audit_records import SEEN_ACTIONS, WITHHELD_ACTIONS, AuditRecord


def _as_log(source: AuditLog | Store) -> AuditLog:
    return source if isinstance(source, AuditLog) else AuditLog(source)


@dataclass(frozen=True)
class Access:
    """One actor's reads and receipts of a household's data."""

    actor: str
    actor_role: str
    actions: dict[str, int]
    first_at: datetime
    last_at: datetime
    data_refs: list[str]
    seqs: list[int]


def who_has_seen(source: AuditLog | Store, household: str) -> list[Access]:
    """Who read or was sent this household's data (read_* and share), grouped by actor."""
    groups: dict[str, list[AuditRecord]] = defaultdict(list)
    for r in _as_log(source).records(household=household, actions=SEEN_ACTIONS):
        groups[r.actor].append(r)
    out = []
    for actor, recs in groups.items():
        counts: dict[str, int] = defaultdict(int)
        for r in recs:
            counts[r.action] += 1
        out.append(Access(actor=actor, actor_role=recs[-1].actor_role, actions=dict(sorted(counts.items())),
                          first_at=recs[0].recorded_at, last_at=recs[-1].recorded_at,
                          data_refs=sorted({r.data_ref for r in recs if r.data_ref}), seqs=[r.seq for r in recs]))
    return sorted(out, key=lambda a: (a.first_at, a.actor))


def withheld(source: AuditLog | Store, household: str | None = None) -> list[AuditRecord]:
    """What was withheld or held (and why: the record's detail), optionally for one household."""
    return _as_log(source).records(household=household, actions=WITHHELD_ACTIONS)


@dataclass(frozen=True)
class OverrideStatus:
    override: AuditRecord
    review: AuditRecord | None

    @property
    def awaiting_review(self) -> bool:
        return self.review is None


def _override_ref(seq: int) -> str:
    return f"audit:{seq}"


def overrides(source: AuditLog | Store, *, since: datetime | None = None, until: datetime | None = None,
              awaiting_only: bool = False) -> list[OverrideStatus]:
    """Safeguarding overrides recorded in [since, until), each with its review if there is one."""
    log = _as_log(source)
    found = log.records(actions=["override"], since=since, until=until)
    reviews: dict[str, AuditRecord] = {}
    for r in log.records(actions=["override_review"]):
        if r.data_ref:
            reviews.setdefault(r.data_ref, r)
    out = [OverrideStatus(o, reviews.get(_override_ref(o.seq))) for o in found]
    return [s for s in out if s.awaiting_review] if awaiting_only else out


def review_override(log: AuditLog, seq: int, reviewer: str, outcome: str, *, reviewer_role: str = "ig_officer",
                    note: str | None = None, source: str | None = None) -> AuditRecord:
    """Record the review of override ``seq`` (an ``override_review`` record with data_ref ``audit:<seq>``).

    Refused if ``seq`` is not an override, was already reviewed, or the reviewer made the override.
    """
    target = log.get(seq)
    if target.action != "override":
        raise ValidationError(f"audit record {seq} is a {target.action}, not an override")
    if target.actor == reviewer:
        raise ValidationError("an override must be reviewed by someone other than the person who made it")
    if log.records(actions=["override_review"], data_ref=_override_ref(seq)):
        raise ValidationError(f"override {seq} has already been reviewed")
    detail: dict[str, Any] = {"override_seq": seq, "outcome": outcome}
    if note:
        detail["note"] = note
    return log.record("override_review", actor=reviewer, actor_role=reviewer_role,
                      subject_household=target.subject_household, subject_child=target.subject_child,
                      data_ref=_override_ref(seq), purpose="override review", legal_basis=target.legal_basis,
                      detail=detail, source=source)


def consent_history(source: AuditLog | Store, household: str) -> list[AuditRecord]:
    """Every consent change recorded for a household, oldest first."""
    return _as_log(source).records(household=household, actions=["consent_change"])
