"""Lifting a disclosure hold and making a safeguarding override: the two ways a person changes what the
consent engine is told about a child's record.

* :func:`release_hold` — the producing agency (role ``agency``, the agency that sent the entry) or an IG
  officer lifts the disclosure hold of one entry: a ``disclosure_releases`` row and a ``release`` audit
  record (the reason sealed) in one transaction, then the child's sharing decisions are taken again, so
  the family's copy and every permitted share follow. The sharing step decides a released entry as
  ``Information.released`` (rule R1-disclosure-hold no longer holds it).
* :func:`make_override` — a safeguarding lead or an IG officer makes a time-limited safeguarding
  override (DPA 2018 Sch 1 para 18) for one child: a recipient agency (and service), optionally
  categories and records, an end, a written justification (sealed in its ``override`` audit record, which
  IG's overrides query lists at once), and whether telling the family would put the child at risk (the
  reason sealed for IG). The sharing step applies it through the consent library's override (R7).
* :func:`expire_overrides` — a chore: an override whose end has passed is marked ``expired_at`` and
  audited (``override_expired``) once, and its child's decisions are taken again at that moment, so what
  was shared only under it is no longer shared (queued shares cancelled, new entries withheld).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from consent import Category
from hub.core.errors import ConflictError, NotFoundError, Problem, ValidationError
from hub.db.schema import disclosure_releases, safeguarding_overrides
from hub.db.store import Store, as_utc, utcnow
from hub.governance.audit import AuditEntry, AuditLog
from hub.governance.audit_seal import reason_subject, seal_text
from hub.sharing.processor import redecide_child
from hub.stream import readmodel
from hub.wire.sealing import KeyVault

MAX_OVERRIDE_DAYS = 90
MIN_JUSTIFICATION = 20


@dataclass(frozen=True)
class Caller:
    subject: str
    role: str
    agency: str | None = None
    source: str | None = None


def _entry(store: Store, household_id: str, child_id: str, event_id: str) -> dict[str, Any]:
    for e in readmodel.child_records(store, household_id, child_id):
        if e["event_id"] == event_id:
            return e
    raise NotFoundError("no such entry in this child's record")


def release_hold(store: Store, vault: KeyVault, household_id: str, child_id: str, event_id: str, *,
                 caller: Caller, reason: str) -> dict[str, Any]:
    """Release the disclosure hold of one entry (module docstring); idempotent for a released entry."""
    entry = _entry(store, household_id, child_id, event_id)
    producer = (entry["record"].get("service") or {}).get("agency_id")
    if caller.role == "agency" and (caller.agency is None or caller.agency != producer):
        raise NotFoundError("no such entry in this child's record")  # another agency's entry: as if absent
    if not entry["record"].get("disclosure_hold"):
        raise ConflictError(Problem("/", "this entry has no disclosure hold"), title="Nothing to release")
    if len(reason.strip()) < 5:
        raise ValidationError(Problem("/reason", "a short reason is required"), title="Release refused")
    now = utcnow()
    R = disclosure_releases.c
    sealed = seal_text(vault, reason_subject(household_id, caller.subject), reason)  # before the write lock
    with store.engine.begin() as conn:
        done = conn.execute(sa.select(R.released_at).where(R.event_id == event_id)).first()
        if done is not None:
            return {"event_id": event_id, "released": True, "released_at": as_utc(done.released_at).isoformat(),
                    "status": "already_released"}
        conn.execute(disclosure_releases.insert().values(
            event_id=event_id, household_id=household_id, child_id=child_id, released_by=caller.subject,
            released_role=caller.role, agency_id=caller.agency, released_at=now))
        rec = AuditLog(store).record_in(conn, AuditEntry(
            "release", actor=caller.subject, actor_role=caller.role, subject_household=household_id,
            subject_child=child_id, data_ref=event_id, purpose="disclosure hold released",
            detail={"record_type": entry["record_type"], "agency": caller.agency or "",
                    "reason": sealed},
            source=caller.source))
        conn.execute(disclosure_releases.update().where(R.event_id == event_id).values(audit_seq=rec.seq))
    result = redecide_child(store, household_id, child_id, trigger="hold_released", now=now)
    return {"event_id": event_id, "released": True, "released_at": now.isoformat(), "status": "released",
            "decisions": result.decisions, "queued": result.queued}


@dataclass(frozen=True)
class OverrideRequest:
    recipient_agency_id: str
    justification: str
    ends_at: datetime
    recipient_service: str | None = None
    categories: tuple[str, ...] | None = None
    information_ids: tuple[str, ...] | None = None
    tell_family: bool = True
    risk_reason: str | None = None  # why telling the family would put the child at risk (tell_family False)


def _check(req: OverrideRequest, now: datetime) -> list[Problem]:
    problems = []
    if len(req.justification.strip()) < MIN_JUSTIFICATION:
        problems.append(Problem("/justification", f"a written justification of at least {MIN_JUSTIFICATION} "
                                "characters is required"))
    if not now < req.ends_at <= now + timedelta(days=MAX_OVERRIDE_DAYS):
        problems.append(Problem("/ends_at", f"an override ends in the future, within {MAX_OVERRIDE_DAYS} days"))
    for c in req.categories or ():
        if c not in {x.value for x in Category}:
            problems.append(Problem("/categories", f"unknown category {c!r}"))
    if not req.tell_family and len((req.risk_reason or "").strip()) < 10:
        problems.append(Problem("/risk_reason", "say why telling the family would put the child at risk"))
    return problems


def make_override(store: Store, vault: KeyVault, household_id: str, child_id: str, req: OverrideRequest, *,
                  caller: Caller) -> dict[str, Any]:
    """Record a safeguarding override (module docstring), then take the child's sharing decisions again."""
    if child_id not in readmodel.children(store, household_id):
        raise NotFoundError("no such household or child")
    now = utcnow()
    problems = _check(req, now)
    if problems:
        raise ValidationError(problems, title="Override refused")
    oid = str(uuid.uuid4())
    subject = reason_subject(household_id, caller.subject)
    detail: dict[str, Any] = {
        "override_id": oid, "recipient_agency": req.recipient_agency_id, "recipient_service": req.recipient_service,
        "categories": list(req.categories) if req.categories else None,
        "records": list(req.information_ids) if req.information_ids else None,
        "ends_at": as_utc(req.ends_at).isoformat(), "tell_family": req.tell_family,
        "justification": seal_text(vault, subject, req.justification)}
    if not req.tell_family:
        detail["risk_reason"] = seal_text(vault, subject, req.risk_reason or "")
    with store.engine.begin() as conn:
        conn.execute(safeguarding_overrides.insert().values(
            override_id=oid, household_id=household_id, child_id=child_id, made_by=caller.subject,
            made_role=caller.role, recipient_agency_id=req.recipient_agency_id,
            recipient_service=req.recipient_service,
            categories=json.dumps(list(req.categories)) if req.categories else None,
            information_ids=json.dumps(list(req.information_ids)) if req.information_ids else None,
            starts_at=now, ends_at=as_utc(req.ends_at), tell_family=req.tell_family, created_at=now))
        rec = AuditLog(store).record_in(conn, AuditEntry(
            "override", actor=caller.subject, actor_role=caller.role, subject_household=household_id,
            subject_child=child_id, data_ref=f"override:{oid}", purpose="safeguarding",
            legal_basis="safeguarding", detail=detail, source=caller.source))
        conn.execute(safeguarding_overrides.update().where(
            safeguarding_overrides.c.override_id == oid).values(audit_seq=rec.seq))
    result = redecide_child(store, household_id, child_id, trigger="safeguarding_override", now=now)
    return {"override_id": oid, "audit_seq": rec.seq, "starts_at": now.isoformat(),
            "ends_at": as_utc(req.ends_at).isoformat(), "tell_family": req.tell_family,
            "decisions": result.decisions, "queued": result.queued}



def expire_overrides(store: Store, now: datetime | None = None) -> int:
    """Decide again, once, each child whose safeguarding override has ended (module docstring); how many."""
    now = now or utcnow()
    SO = safeguarding_overrides.c
    with store.engine.connect() as conn:
        ended = conn.execute(sa.select(safeguarding_overrides).where(
            SO.ends_at <= now, SO.expired_at.is_(None)).order_by(SO.ends_at).limit(200)).all()
    done = 0
    for o in ended:
        with store.engine.begin() as conn:
            if not conn.execute(safeguarding_overrides.update().where(
                    SO.override_id == o.override_id, SO.expired_at.is_(None)).values(expired_at=now)).rowcount:
                continue  # another chore saw it first
            AuditLog(store).record_in(conn, AuditEntry(
                "override_expired", actor="hub", actor_role="system", subject_household=o.household_id,
                subject_child=o.child_id, data_ref=f"override:{o.override_id}", purpose="safeguarding",
                detail={"override_id": o.override_id, "recipient_agency": o.recipient_agency_id,
                        "recipient_service": o.recipient_service, "ends_at": as_utc(o.ends_at).isoformat()}))
        redecide_child(store, o.household_id, o.child_id, trigger="override_expired", now=now)
        done += 1
    return done
