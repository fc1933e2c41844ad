"""Keeping ``consent_directives`` in step with the consent entries of the children's records.

A ConsentGranted / ConsentWithdrawn entry that joined, changed in or left a child's record becomes a
directive row (FHIR R4 Consent converted with ``consent.fhir.from_fhir``) of that child. A directive
an agency recorded may wait as ``pending_confirmation`` (:mod:`hub.sharing.recorded_consent`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consent import ConsentError
from consent.fhir import from_fhir
from hub.db.schema import consent_directives, timeline_entries
from hub.db.sealed import sealer, sealer_of
from hub.db.store import Store, as_utc
from hub.sharing import recorded_consent
from hub.sharing.recorded_consent import PENDING
from hub.stream import readmodel

CD = consent_directives.c


def consent_records(store: Store, event_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The records of these consent entries, by event id, times parsed."""
    ids = sorted(set(event_ids))
    out: dict[str, dict[str, Any]] = {}
    T = timeline_entries.c
    seal = sealer(store)
    with store.engine.connect() as conn:
        for i in range(0, len(ids), 500):
            for r in conn.execute(sa.select(T.event_id, T.record).where(T.event_id.in_(ids[i:i + 500]))):
                record = seal.json(T.record, r.event_id, r.record)
                if record is not None:  # not erased
                    out[r.event_id] = readmodel.parse_times(record)
    return out


def record_consent(conn: Connection, kind: str, record_type: str, home: tuple[str, str], record: dict[str, Any],
                   now: datetime) -> bool:
    """A consent entry that joined, left or changed (``kind``) in the child ``home``'s record; True if it mattered."""
    household_id, child_id = home
    did = record["directive_id"]
    if kind == "left":  # a wrong link undone: the directive waits for its subject's next link
        return conn.execute(consent_directives.update().where(
            CD.directive_id == did, CD.child_id == child_id).values(
            child_id=None, household_id=None, updated_at=now)).rowcount > 0
    if record_type == "ConsentGranted":
        changed = _upsert_grant(conn, record, home, now)
    else:
        changed = _apply_withdrawal(conn, record, home, now)
    moved = conn.execute(consent_directives.update().where(
        CD.directive_id == did, sa.or_(CD.child_id.is_(None), CD.child_id != child_id)).values(
        child_id=child_id, household_id=household_id, updated_at=now)).rowcount
    return changed or moved > 0


def _upsert_grant(conn: Connection, record: dict[str, Any], home: tuple[str, str] | None, now: datetime) -> bool:
    meta = record["meta"]
    did, version = record["directive_id"], int(meta.get("source_version", 1))
    cur = conn.execute(sa.select(consent_directives).where(CD.directive_id == did)).first()
    # a pending agency-recorded directive is looked at again when it joins a child (it may be in force now)
    recheck = cur is not None and cur.status == PENDING and cur.source_version == version
    if cur is not None and cur.fhir_json is not None and cur.source_version >= version and not recheck:
        return False
    status, error, made_at, withdrawn = "active", None, None, None
    try:
        d = from_fhir(json.loads(record["fhir_consent"]))
        made_at, withdrawn = d.made_at, d.withdrawn_at
        if d.id != did:
            raise ValueError(f"the Consent identifier {d.id} is not the event's directive id")
        if withdrawn is not None:
            status = "withdrawn"
        elif recorded_consent.agency_recorded(record) and not recorded_consent.in_force(conn, record, d, home):
            status = PENDING
    except (ConsentError, ValueError) as exc:
        status, error = "invalid", str(exc)[:2000]
    if meta.get("status") == "entered_in_error":
        status, error = "invalid", "entered in error by its sender"
    if recheck and status == PENDING:
        return False
    if cur is not None and cur.status == "withdrawn" and status in ("active", PENDING):
        status, withdrawn = "withdrawn", None if cur.withdrawn_at is None else as_utc(cur.withdrawn_at)
    # the Consent as received may name the child or parent: sealed under its subject's key
    fhir = sealer_of(conn).seal(CD.fhir_json, did, meta["subject"], record["fhir_consent"])
    row = dict(directive_id=did, subject=meta["subject"], child_id=home[1] if home else None,
               household_id=home[0] if home else None, event_id=meta["event_id"], source_version=version,
               fhir_json=fhir, status=status, made_at=made_at, withdrawn_at=withdrawn, error=error, updated_at=now)
    if cur is None:
        conn.execute(consent_directives.insert(), row)
    else:
        conn.execute(consent_directives.update().where(CD.directive_id == did).values(**row))
    return True


def _apply_withdrawal(conn: Connection, record: dict[str, Any], home: tuple[str, str] | None,
                      now: datetime) -> bool:
    meta = record["meta"]
    did, at = record["directive_id"], meta["occurred_at"]
    cur = conn.execute(sa.select(consent_directives).where(CD.directive_id == did)).first()
    if cur is None:  # withdrawal before the grant: remember it
        conn.execute(consent_directives.insert(), dict(
            directive_id=did, subject=meta["subject"], child_id=home[1] if home else None,
            household_id=home[0] if home else None, event_id=None, source_version=0, fhir_json=None,
            status="withdrawn", made_at=None, withdrawn_at=at, error=None, updated_at=now))
        return True
    if cur.status == "withdrawn" and cur.withdrawn_at is not None and as_utc(cur.withdrawn_at) <= at:
        return False
    if cur.status == "invalid" or not recorded_consent.withdrawal_allowed(conn, record, cur.event_id):
        return False
    conn.execute(consent_directives.update().where(CD.directive_id == did).values(
        status="withdrawn", withdrawn_at=at, updated_at=now))
    return True
