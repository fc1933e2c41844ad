"""Erasure of one person: crypto-shredding of their data keys, projections purged, one audit record.

The person is a household member (child or adult, or a child id known only from identity links)
or a subject given by agency identifier (system and value; the value is pseudonymised at once and
never stored, logged or echoed). An identifier linked to a member erases that member.
:meth:`Erasure.erase` then, in one transaction that holds the erasure lock (:mod:`hub.erasure_guard`):

1. shreds every data key of every subject pseudonym linked to the person (:mod:`hub.keyvault`):
   their records in the ingest log, on every Kafka topic, in dead letters and in backups of any of
   these become unreadable, and the log itself is never rewritten;
2. records the subjects in ``erased_subjects``, so nothing received before now is ever projected
   again for them — not by a worker, a redelivery or a replay;
3. removes their rows from every table tagged ``erase: delete`` in :mod:`hub.db.schema` (by
   subject pseudonym, by the ids of events about them, or by member id, as each table's
   ``erase_by`` says): timeline entries, identity links, timeline changes, parked records (entries
   of unlinked subjects are the same rows), dead letters, consent directives (the FHIR Consent
   JSON), share decisions, deliveries (with their payloads), alerts, and the enrolment record of a
   member (date of birth and every other field);
4. marks the person's ingest-log rows erased (the sealed bytes stay: they are unreadable; a value
   written before sealing existed is overwritten, as nothing else could put it beyond use), so
   replays and the re-seeding of a new broker leave them out;
5. adds a row to the ``erasures`` register (which member, which pseudonyms, why, who, when).

In the same transaction it writes one ``erasure`` audit record (who, whose pseudonyms, why, when,
what was removed; no identifiers): an erasure whose record cannot be written does not happen. A
written reason is required. Erasing the same person again finds nothing left and changes nothing
(``status="already_erased"``); a register row without its audit record (written before records
were part of the erasure's transaction) gets it then.

Records about the person that an agency sends *after* the erasure are new information: they are
sealed under a new data key version and projected (as an unlinked subject) like any other.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.core.errors import NotFoundError, Problem, ValidationError
from hub.core.events import ENROLMENT_SOURCE, IDENTIFIER_SYSTEMS, SubjectRef
from hub.core.logging import get_logger
from hub.db.erasure_guard import E, hold_exclusive
from hub.db.keyvault import K, SqlKeyVault
from hub.db.schema import (
    DELETE,
    EVENT,
    MEMBER,
    SUBJECT,
    child_summaries,
    consent_directives,
    erased_subjects,
    erasures,
    household_members,
    identity_links,
    ingest_log,
    metadata,
    subject_keys,
    timeline_entries,
)
from hub.db.sealed import member_key
from hub.db.store import Store, utcnow
from hub.governance.audit import AuditEntry, AuditLog, check_detail
from hub.wire.sealing import is_sealed

log = get_logger(__name__)

LEGAL_BASIS = "UK GDPR Article 17 (right to erasure)"
MAX_REASON = 2000
_IN_CHUNK = 2000
LOG = ingest_log.c


@dataclass(frozen=True)
class MemberRef:
    """A household member, by the hub's own (pseudonymous) ids."""

    household_id: str
    member_id: str


@dataclass(frozen=True)
class ErasureResult:
    erasure_id: str
    status: Literal["erased", "already_erased"]
    kind: Literal["member", "subject"]
    household_id: str | None
    member_id: str | None
    subjects: list[str]
    keys_shredded: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    audit_seq: int | None = None


class _NothingLeft(Exception):
    """Control flow inside erase(): nothing was left to erase (never escapes it)."""

    def __init__(self, previous: ErasureResult) -> None:
        self.previous = previous


@dataclass(frozen=True)
class _Person:
    kind: Literal["member", "subject"]
    household_id: str | None
    member_id: str | None
    subjects: list[str]
    previous: ErasureResult | None = None  # this person was erased before (the register's last erasure)


def _chunks(values: Iterable[str]) -> list[list[str]]:
    ordered = sorted(set(values))
    return [ordered[i:i + _IN_CHUNK] for i in range(0, len(ordered), _IN_CHUNK)]


def _scalars(conn: Connection, column: Any, where: Callable[[list[str]], Any], values: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(values):
        found.update(r[0] for r in conn.execute(sa.select(column).where(where(chunk)).distinct()) if r[0])
    return found


def _delete_rows(conn: Connection, table: sa.Table, values: Mapping[str, Iterable[str]], member: str | None) -> int:
    """Delete a table's rows of one person, by its ``erase_by`` tag; how many went."""
    n = 0
    for kind, name in table.info["erase_by"].items():
        column = table.c[name]
        if kind == MEMBER:
            if member:
                n += conn.execute(table.delete().where(column == member)).rowcount or 0
            continue
        for chunk in _chunks(values[kind]):
            n += conn.execute(table.delete().where(column.in_(chunk))).rowcount or 0
    return n


def _keys_of(person: _Person) -> list[str]:
    """The data keys erasing ``person`` shreds: their subjects' and, for a household member, the member's own
    (what enrolment and sharing sealed about them: a birth date, copies of reports about a child)."""
    return [*person.subjects, *([member_key(person.member_id)] if person.member_id else [])]


def check_reason(reason: str | None) -> str:
    """The reason, trimmed; ValidationError if missing, too long or holding an identifier."""
    text = (reason or "").strip()
    if not text:
        raise ValidationError(Problem("reason", "a written reason is required for an erasure"),
                              title="Erasure refused")
    if len(text) > MAX_REASON:
        raise ValidationError(Problem("reason", f"at most {MAX_REASON} characters"), title="Erasure refused")
    try:
        check_detail({"reason": text})
    except ValueError:
        raise ValidationError(Problem("reason", "must not hold an NHS number, UPN or date of birth: describe the "
                                                "request (e.g. its reference), not the person"),
                              title="Erasure refused") from None
    return text


class Erasure:
    """Erases people; see the module docstring. Synchronous: call from a thread in async code."""

    def __init__(self, store: Store, vault: SqlKeyVault, pseudonymise: Callable[[str, str], str]) -> None:
        self.store = store
        self.vault = vault
        self.pseudonymise = pseudonymise

    # -- who --
    def _member_subjects(self, conn: Connection, member_id: str) -> set[str]:
        subjects = {r[0] for r in conn.execute(sa.select(identity_links.c.subject).where(
            identity_links.c.child_id == member_id))}
        # links made through enrolment are in the log as "<member id>:<subject>", projected or not
        subjects |= {r[0] for r in conn.execute(sa.select(LOG.key).where(
            LOG.source_system == ENROLMENT_SOURCE, LOG.source_id.like(f"{member_id}:%")).distinct())}
        subjects |= {r[0] for r in conn.execute(sa.select(consent_directives.c.subject).where(
            consent_directives.c.child_id == member_id)) if r[0]}
        # the key the family's summary of the child is sealed under (shredded with the rest)
        subjects |= {r[0] for r in conn.execute(sa.select(child_summaries.c.subject).where(
            child_summaries.c.child_id == member_id))}
        return subjects

    def _linked_member(self, conn: Connection, subject: str) -> tuple[str, str] | None:
        """(household, member or child id) an identifier's subject is linked to, if any."""
        link = conn.execute(sa.select(identity_links.c.household_id, identity_links.c.child_id).where(
            identity_links.c.subject == subject)).first()
        if link is not None:
            return link.household_id, link.child_id
        for r in conn.execute(sa.select(LOG.source_id).where(
                LOG.source_system == ENROLMENT_SOURCE, LOG.key == subject, LOG.source_id.like(f"%:{subject}"))):
            row = conn.execute(sa.select(household_members.c.household_id).where(
                household_members.c.member_id == str(r[0]).split(":", 1)[0])).first()
            if row is not None:
                return row.household_id, str(r[0]).split(":", 1)[0]
        return None

    @staticmethod
    def _known_member(conn: Connection, target: MemberRef) -> bool:
        """An enrolled member, or a child id the identity links know in this household."""
        m = household_members.c
        if conn.execute(sa.select(m.member_id).where(m.member_id == target.member_id,
                                                     m.household_id == target.household_id)).first():
            return True
        lk = identity_links.c
        return conn.execute(sa.select(lk.subject).where(lk.child_id == target.member_id,
                                                        lk.household_id == target.household_id).limit(1)).first() \
            is not None

    @staticmethod
    def _holds_anything(conn: Connection, subject: str) -> bool:
        """Whether any table with a subject pseudonym column holds a row of this subject."""
        for table in metadata.sorted_tables:
            for name, kind in table.info.get("personal", {}).items():
                if kind != SUBJECT:
                    continue
                column = table.c[name]
                if conn.execute(sa.select(column).where(column == subject).limit(1)).first() is not None:
                    return True
        return False

    def _resolve(self, target: MemberRef | SubjectRef) -> _Person:
        with self.store.engine.connect() as conn:
            if isinstance(target, MemberRef):
                if not self._known_member(conn, target):
                    done = self._previous(conn, target)
                    if done is None:
                        raise NotFoundError("no such member in this household")
                    # erased before: look again for anything written since (a sharing pass in flight)
                    return _Person("member", done.household_id, done.member_id, done.subjects, done)
                return _Person("member", target.household_id, target.member_id,
                               sorted(self._member_subjects(conn, target.member_id)))
            if target.system not in IDENTIFIER_SYSTEMS:
                raise ValidationError(Problem("system", f"must be one of {', '.join(IDENTIFIER_SYSTEMS)}"),
                                      title="Erasure refused")
            if not target.value.strip():
                raise ValidationError(Problem("value", "an identifier value is required"), title="Erasure refused")
            subject = self.pseudonymise(target.system, target.value)
            linked = self._linked_member(conn, subject)
            if linked is not None:
                household_id, member_id = linked
                return _Person("member", household_id, member_id,
                               sorted(self._member_subjects(conn, member_id) | {subject}))
            if not self._holds_anything(conn, subject):
                raise NotFoundError("the hub holds no data for this identifier")
            return _Person("subject", None, None, [subject])

    def _previous(self, conn: Connection, target: MemberRef) -> ErasureResult | None:
        row = conn.execute(sa.select(erasures).where(
            erasures.c.member_id == target.member_id, erasures.c.household_id == target.household_id)
            .order_by(erasures.c.erased_at.desc()).limit(1)).first()
        if row is None:
            return None
        return ErasureResult(row.erasure_id, "already_erased", "member", row.household_id, row.member_id,
                             json.loads(row.subjects), audit_seq=row.audit_seq)

    # -- what --
    def _purge(self, conn: Connection, person: _Person) -> dict[str, int]:
        """Delete the person's rows from every table tagged ``erase: delete``; mark their ingest-log rows."""
        subjects = person.subjects
        events = _scalars(conn, LOG.event_id, lambda c: LOG.key.in_(c), subjects)
        events |= _scalars(conn, timeline_entries.c.event_id, lambda c: timeline_entries.c.subject.in_(c), subjects)
        removed: dict[str, int] = {}
        for table in metadata.sorted_tables:
            if table.info.get("erase") == DELETE:
                n = _delete_rows(conn, table, {SUBJECT: subjects, EVENT: events}, person.member_id)
                if n:
                    removed[table.name] = n
        marked = self._mark_log(conn, subjects)
        if marked:
            removed["ingest_log_marked_erased"] = marked
        return removed

    @staticmethod
    def _mark_log(conn: Connection, subjects: Sequence[str]) -> int:
        now = utcnow()
        marked = 0
        for chunk in _chunks(subjects):
            rows = conn.execute(sa.select(LOG.seq, LOG.value).where(LOG.key.in_(chunk), LOG.erased_at.is_(None))).all()
            plain = [r.seq for r in rows if not is_sealed(bytes(r.value))]
            for i in range(0, len(plain), _IN_CHUNK):  # unsealed (older) values: nothing else puts them beyond use
                conn.execute(ingest_log.update().where(LOG.seq.in_(plain[i:i + _IN_CHUNK])).values(value=b""))
            marked += conn.execute(ingest_log.update().where(LOG.key.in_(chunk), LOG.erased_at.is_(None)).values(
                erased_at=now, published_at=sa.func.coalesce(LOG.published_at, now))).rowcount or 0
        return marked

    # -- the whole thing --
    def erase(self, target: MemberRef | SubjectRef, *, reason: str | None, actor: str, actor_role: str = "",
              source: str | None = None) -> ErasureResult:
        """Erase one person (see the module docstring); ValidationError / NotFoundError change nothing."""
        text = check_reason(reason)
        if not actor:
            raise ValidationError(Problem("actor", "an erasure needs the id of who asked for it"),
                                  title="Erasure refused")
        person = self._resolve(target)
        erasure_id = str(uuid.uuid4())
        detail: dict[str, Any] = {"reason": text, "target": person.kind, "subjects": person.subjects}
        check_detail(detail)
        now = utcnow()
        with self.store.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # overwrite freed database pages (the shredded keys) instead of leaving them
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
                conn.commit()
            try:
                with conn.begin():
                    hold_exclusive(conn)
                    previous = person.previous or self._previous_of_subjects(conn, person.subjects)
                    shredded = self.vault.shred(conn, _keys_of(person))
                    removed = self._purge(conn, person)
                    if not shredded and not removed and previous is not None:
                        raise _NothingLeft(previous)
                    for subject in person.subjects:
                        conn.execute(erased_subjects.delete().where(E.subject == subject))
                        conn.execute(erased_subjects.insert().values(subject=subject, erased_at=now,
                                                                     erasure_id=erasure_id))
                    conn.execute(erasures.insert().values(
                        erasure_id=erasure_id, kind=person.kind, household_id=person.household_id,
                        member_id=person.member_id, subjects=json.dumps(person.subjects), reason=text,
                        requested_by=actor, requested_role=actor_role, erased_at=now))
                    result = ErasureResult(erasure_id, "erased", person.kind, person.household_id,
                                           person.member_id, person.subjects, shredded, removed)
                    # the audit record commits with the erasure, or the erasure does not happen
                    record = AuditLog(self.store).record_in(conn, _entry(result, text, actor, actor_role, source))
                    conn.execute(erasures.update().where(erasures.c.erasure_id == erasure_id)
                                 .values(audit_seq=record.seq))
            except _NothingLeft as nothing:
                log.info("erasure.nothing_left", subjects=len(person.subjects))
                return self._finish_audit(nothing.previous)
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA secure_delete=OFF")
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                    conn.commit()
        self.vault.forget(_keys_of(person))
        log.info("erasure.done", erasure_id=erasure_id, subjects=len(person.subjects), keys_shredded=shredded,
                 rows=sum(removed.values()))
        return ErasureResult(result.erasure_id, result.status, result.kind, result.household_id, result.member_id,
                             result.subjects, result.keys_shredded, result.removed, record.seq)

    @staticmethod
    def _previous_of_subjects(conn: Connection, subjects: Sequence[str]) -> ErasureResult | None:
        """The last erasure of these subjects, if every one of them was erased before."""
        if not subjects:
            return None
        rows = conn.execute(sa.select(E.subject, E.erasure_id).where(E.subject.in_(list(subjects)))).all()
        if {r.subject for r in rows} != set(subjects):
            return None
        row = conn.execute(sa.select(erasures).where(erasures.c.erasure_id.in_({r.erasure_id for r in rows}))
                           .order_by(erasures.c.erased_at.desc()).limit(1)).first()
        if row is None:
            return None
        return ErasureResult(row.erasure_id, "already_erased", row.kind, row.household_id, row.member_id,
                             json.loads(row.subjects), audit_seq=row.audit_seq)

    def _audit(self, result: ErasureResult, reason: str, actor: str, actor_role: str,
               source: str | None) -> ErasureResult:
        written = AuditLog(self.store).record_many([_entry(result, reason, actor, actor_role, source)])
        if not written:  # dead-lettered, with its reason
            return result
        record = written[0]
        with self.store.engine.begin() as conn:
            conn.execute(erasures.update().where(erasures.c.erasure_id == result.erasure_id)
                         .values(audit_seq=record.seq))
        return ErasureResult(result.erasure_id, result.status, result.kind, result.household_id, result.member_id,
                             result.subjects, result.keys_shredded, result.removed, record.seq)

    def _finish_audit(self, previous: ErasureResult) -> ErasureResult:
        """An erasure found again: write its audit record if a crash left it out, else change nothing."""
        if previous.audit_seq is not None:
            return previous
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(erasures).where(erasures.c.erasure_id == previous.erasure_id)).one()
        return self._audit(previous, row.reason, row.requested_by, row.requested_role, None)


def _entry(result: ErasureResult, reason: str, actor: str, actor_role: str, source: str | None) -> AuditEntry:
    return AuditEntry(
        "erasure", actor=actor, actor_role=actor_role, subject_household=result.household_id,
        subject_child=result.member_id, data_ref=f"erasure:{result.erasure_id}", purpose="erasure",
        legal_basis=LEGAL_BASIS, source=source,
        detail={"reason": reason, "target": result.kind, "subjects": result.subjects,
                "keys_shredded": result.keys_shredded, "removed": result.removed})


def live_key_count(store: Store, subjects: Sequence[str]) -> int:
    """Data keys of these subjects that are not shredded (for checks and tests)."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(subject_keys).where(
            K.subject.in_(list(subjects)), K.shredded_at.is_(None))).scalar_one())
