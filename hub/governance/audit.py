"""Append-only, hash-chained audit log: who saw or sent what about which family, when, and why.

Information-governance (IG) officers must be able to *prove* who saw what and on what basis. Every
decision and disclosure the hub makes (shares, withholds, holds, safeguarding overrides, consent
changes, identity links, reads of timelines and reports, exports, erasures, refused logins) is written
here as one :class:`AuditRecord` through :class:`AuditLog`.

What is chained
---------------
Table ``audit_log`` (migration 0003). Each row holds ``recorded_at``, ``actor``, ``actor_role``,
``action``, ``subject_household``, ``subject_child`` (pseudonymous ids, never NHS numbers or UPNs),
``data_ref`` (event / report / decision id), ``purpose``, ``legal_basis``, ``detail`` (a JSON object),
``source`` (IP address or component), ``prev_hash`` and ``hash``::

    hash = SHA-256( canonical JSON {v, recorded_at, actor, actor_role, action, subject_household,
                                    subject_child, data_ref, purpose, legal_basis, detail, source,
                                    prev_hash} )

Canonical JSON: sorted keys, no whitespace, UTF-8; ``recorded_at`` as ISO-8601 UTC with
microseconds; ``detail`` as the exact stored text. The first record links to 64 zeros
(:data:`GENESIS`). ``seq`` is *not* hashed: the order of the log is the order of the chain links,
and ``seq`` is checked against it. ``seq`` is allocated by the writer (last seq + 1) under the write
lock, so the log has no gaps of its own making and ``recorded_at`` never goes backwards.

Writes are serialised so the chain never forks: PostgreSQL takes a transaction-level advisory lock
(``pg_advisory_xact_lock``) before reading the last hash; SQLite opens the transaction with
``BEGIN IMMEDIATE`` (the database's write lock, waited for up to the busy timeout).
:meth:`AuditLog.record_many` writes several records in one transaction.

``detail`` must not carry personal identifiers: every key and string value is passed through
:func:`hub.core.privacy.scrub_text`; if that would change it (an NHS-number-, UPN- or bare-date-shaped
value) the record is refused with ``ValueError``, as are keys that name personal data (``name``,
``dob``, ``nhs_number`` …). Use timestamps (``2026-01-02T10:00:00Z``), not bare dates, in details.
Records are built from the hub's own ids and codes; free text a caller typed (a link or investigation
reason) is sealed first (:mod:`hub.governance.audit_seal`: ``{"sealed": …}`` values are not scanned).

A refusal never stops the trail. :meth:`AuditLog.record_many` (the writer of the audit jobs) puts a
record it cannot store in ``audit_dead_letters`` with the reason — which check failed on which field,
never the value; an id-shaped household or child id is left out — and writes the others in the same
transaction; IG sees the count on ``GET /v1/audit/verify`` and operators on ``/metrics``
(``hub_audit_dead_letters``). :meth:`AuditLog.record` and :meth:`AuditLog.record_in` stay strict
(``ValueError``): their callers need the record, and :meth:`~AuditLog.record_in` writes it in the
caller's own transaction, so a change whose record cannot be written does not happen.

How verify names tampering
--------------------------
:meth:`AuditLog.verify` reads the whole table, rebuilds the chain by following ``prev_hash`` links
from the genesis record, and reports each problem with its seq as :class:`AuditProblem`:

* **ALTERED** — a record's content no longer hashes to its stored ``hash`` (a column was edited), or
  its hash differs from an anchor taken earlier (the record was edited *and* re-hashed).
* **DELETED** — a gap in ``seq`` (one problem per missing seq), including a truncated tail found by
  an anchor; or, without a gap, a record whose ``prev_hash`` matches no record at all (the record
  before it was removed and later seqs renumbered — or that predecessor was edited and re-hashed).
* **REORDERED** — records whose position in ``seq`` contradicts their position in the chain (a
  whole-row swap: both are named), whose content hashes correctly only with another seq's links (a
  swap of the data columns only), or, among otherwise sound records, whose ``recorded_at`` order
  contradicts ``seq`` order (a swap with the whole chain re-hashed).
* **INSERTED** — a record that links to a record which already has a successor (a fork: the chain
  continues through the longer branch, the other branch is forged), a second genesis record, a record
  that hashes to nothing and links to nothing, or a record spliced in between two records whose
  follower's link was re-pointed to it.

Anchors
-------
:meth:`AuditLog.anchor` stores the last (seq, hash, at) in table ``audit_anchors``; the log anchors
itself every ``anchor_every`` records (in the writing transaction) and hands each anchor to an
optional ``anchor_sink`` callback. Verify checks that every anchored seq still exists with the anchored
hash, which catches truncation of the tail and a chain rewritten from some point on.

Limits
------
The chain is unkeyed. Someone who can rewrite the whole table *and* the anchors (for instance a
database superuser) can produce a consistent forgery that the chain alone cannot show, and records
appended after the last anchor with correct links are indistinguishable from genuine ones. Signed
checkpoints kept off the database (:mod:`hub.governance.checkpoints`, written by
:mod:`hub.governance.checkpoint_writer`, compared by :mod:`hub.governance.checkpoint_verify`) close the
first gap and narrow the second to the records after the last checkpoint (docs/operations.md,
"Audit checkpoints"). :meth:`AuditLog.verify` also takes anchors kept elsewhere (``extra_anchors=``).
Verify holds the whole log in memory (a few hundred bytes per record).

Modules: the records, actions and hash in :mod:`hub.governance.audit_records`; verification in
:mod:`hub.governance.audit_verify`; the IG queries (:func:`~hub.governance.audit_queries.who_has_seen`,
``withheld``, ``overrides`` / ``review_override``, ``consent_history``) in :mod:`hub.governance.audit_queries`;
the family's own view is :func:`hub.sharing.transparency.family_view`. Exports (FHIR R4 AuditEvent, CSV) are in
:mod:`hub.governance.export`; the ``hub audit`` commands in :mod:`hub.cli.audit`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from hub.core.errors import AuditIntegrityError, NotFoundError, StoreError
from hub.core.logging import get_logger
from hub.db.schema import audit_anchors, audit_dead_letters, audit_log
from hub.db.store import Store, as_utc, utcnow
from hub.governance.audit_chain import PG_LOCK_KEY, append_in, chain, dead_letter, prepare
from hub.governance.audit_records import (
    ACTIONS,
    GENESIS,
    READ_ACTIONS,
    SEEN_ACTIONS,
    WITHHELD_ACTIONS,
    Anchor,
    AuditEntry,
    AuditProblem,
    AuditRecord,
    VerifyReport,
    check_detail,
    compute_hash,
    register_action,
)
from hub.governance.audit_verify import verify_rows

__all__ = (
    "ACTIONS", "GENESIS", "READ_ACTIONS", "SEEN_ACTIONS", "WITHHELD_ACTIONS", "Anchor", "AuditEntry",
    "AuditLog", "AuditProblem", "AuditRecord", "VerifyReport", "append_in", "check_detail", "compute_hash",
    "register_action", "verify_rows",
)

log = get_logger(__name__)



def _row_to_record(row: Any) -> AuditRecord:
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = {"_unparseable": True}
    return AuditRecord(
        seq=int(row.seq), recorded_at=as_utc(row.recorded_at).astimezone(UTC), actor=row.actor,
        actor_role=row.actor_role, action=row.action, subject_household=row.subject_household,
        subject_child=row.subject_child, data_ref=row.data_ref, purpose=row.purpose,
        legal_basis=row.legal_basis, detail=detail if isinstance(detail, dict) else {"value": detail},
        source=row.source, prev_hash=row.prev_hash, hash=row.hash,
    )


def _first_line(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


# ---- the log ------------------------------------------------------------------------------------
class AuditLog:
    """Writes and verifies the audit chain. Thread-safe: writers are serialised by the database."""

    def __init__(self, store: Store, *, anchor_every: int = 100,
                 anchor_sink: Callable[[Anchor], None] | None = None) -> None:
        self.store = store
        self.engine = store.engine
        self.anchor_every = anchor_every
        self.anchor_sink = anchor_sink

    # -- writing --
    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        """A transaction that holds the audit write lock from its first statement."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
                return
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
                else:  # other databases: lock the table's last row
                    conn.execute(sa.select(audit_log.c.seq).order_by(audit_log.c.seq.desc()).limit(1)
                                 .with_for_update())
                yield conn

    def transaction(self) -> AbstractContextManager[Connection]:
        """A transaction that holds the audit write lock from its first statement (for :func:`append_in`)."""
        return self._write_tx()

    def record(self, action: str, *, actor: str, actor_role: str = "", subject_household: str | None = None,
               subject_child: str | None = None, data_ref: str | None = None, purpose: str | None = None,
               legal_basis: str | None = None, detail: Mapping[str, Any] | None = None,
               source: str | None = None) -> AuditRecord:
        """Append one record and return it (with seq and hash); strict: ``ValueError`` if it cannot be stored."""
        return self._write([self._prepare(AuditEntry(
            action=action, actor=actor, actor_role=actor_role, subject_household=subject_household,
            subject_child=subject_child, data_ref=data_ref, purpose=purpose, legal_basis=legal_basis,
            detail=detail, source=source))], [])[0]

    def record_many(self, entries: Iterable[AuditEntry | Mapping[str, Any]]) -> list[AuditRecord]:
        """Append several records in one transaction, chained in the order given.

        A record that cannot be stored (unknown action, no actor, personal data in its detail) is
        dead-lettered with its reason and the others are written: nothing a caller sends can stop the trail.
        """
        prepared: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        for raw in entries:
            e = raw if isinstance(raw, AuditEntry) else AuditEntry(**raw)
            try:
                prepared.append(self._prepare(e))
            except ValueError as exc:
                dead.append(dead_letter(e, str(exc)))
        if not prepared and not dead:
            return []
        return self._write(prepared, dead)

    def _write(self, prepared: list[dict[str, Any]], dead: list[dict[str, Any]]) -> list[AuditRecord]:
        rows: list[dict[str, Any]] = []
        anchors: list[Anchor] = []
        try:
            with self._write_tx() as conn:
                if prepared:
                    rows, anchors = self._append(conn, prepared)
                if dead:
                    conn.execute(audit_dead_letters.insert(), dead)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write the audit log: {_first_line(exc)}") from exc
        if dead:
            log.warning("audit.dead_lettered", records=len(dead), reasons=sorted({d["reason"] for d in dead}))
        for a in anchors:
            self._ship(a)
        return [_row_to_record(_Obj(r)) for r in rows]

    def record_in(self, conn: Connection, entry: AuditEntry) -> AuditRecord:
        """Append one record in the caller's transaction, so it commits or rolls back with the change.

        Strict: ``ValueError`` if the record cannot be stored (the caller's transaction then rolls back).
        On SQLite the caller's transaction must already hold the write lock (it has written, or began
        with ``BEGIN IMMEDIATE``); on PostgreSQL the audit lock is taken here, until the commit.
        """
        fields = self._prepare(entry)
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
        rows, anchors = self._append(conn, [fields])
        for a in anchors:  # shipped before the commit: an anchor of a record that rolled back fails verify loudly
            self._ship(a)
        return _row_to_record(_Obj(rows[0]))

    def _append(self, conn: Connection, prepared: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Anchor]]:
        """Chain and insert prepared records; the caller holds the audit write lock."""
        return chain(conn, prepared, self.anchor_every)

    def dead_letter_count(self) -> int:
        """Audit records the writer could not store."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(audit_dead_letters)).scalar_one())

    _prepare = staticmethod(prepare)

    def _ship(self, anchor: Anchor) -> None:
        if self.anchor_sink is not None:
            self.anchor_sink(anchor)

    def anchor(self) -> Anchor | None:
        """Store the current last (seq, hash) in ``audit_anchors``; None if the log is empty."""
        with self._write_tx() as conn:
            last = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash)
                                .order_by(audit_log.c.seq.desc()).limit(1)).first()
            if last is None:
                return None
            a = Anchor(int(last.seq), last.hash, utcnow())
            conn.execute(audit_anchors.insert().values(seq=a.seq, hash=a.hash, anchored_at=a.anchored_at))
        self._ship(a)
        return a

    def head(self) -> tuple[int, str, int] | None:
        """The last (seq, hash) and the number of records, read under the write lock (what a signed
        checkpoint states, :mod:`hub.governance.checkpoint_writer`); None if the log is empty."""
        with self._write_tx() as conn:
            last = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash)
                                .order_by(audit_log.c.seq.desc()).limit(1)).first()
            count = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()
        return None if last is None else (int(last.seq), last.hash, int(count))

    def anchors(self) -> list[Anchor]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(audit_anchors).order_by(audit_anchors.c.id)).all()
        return [Anchor(int(r.seq), r.hash, as_utc(r.anchored_at)) for r in rows]

    # -- reading --
    def records(self, *, household: str | None = None, actions: Iterable[str] | None = None,
                since: datetime | None = None, until: datetime | None = None,
                data_ref: str | None = None) -> list[AuditRecord]:
        """Records in seq order, filtered; ``until`` is exclusive."""
        c = audit_log.c
        q = sa.select(audit_log).order_by(c.seq)
        if household is not None:
            q = q.where(c.subject_household == household)
        if actions is not None:
            q = q.where(c.action.in_(list(actions)))
        if since is not None:
            q = q.where(c.recorded_at >= as_utc(since))
        if until is not None:
            q = q.where(c.recorded_at < as_utc(until))
        if data_ref is not None:
            q = q.where(c.data_ref == data_ref)
        with self.engine.connect() as conn:
            return [_row_to_record(r) for r in conn.execute(q)]

    def get(self, seq: int) -> AuditRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).first()
        if row is None:
            raise NotFoundError(f"no audit record with seq {seq}")
        return _row_to_record(row)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one())

    # -- verification --
    def verify(self, *, extra_anchors: Iterable[Anchor] = ()) -> VerifyReport:
        """Walk the chain and name every problem (see the module docstring)."""
        with self.engine.connect() as conn:
            rows = [_Obj(dict(r._mapping)) for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))]
        anchors = [*self.anchors(), *extra_anchors]
        return verify_rows(rows, anchors)

    def verify_or_raise(self, *, extra_anchors: Iterable[Anchor] = ()) -> VerifyReport:
        """:meth:`verify`, raising :class:`AuditIntegrityError` if anything is wrong."""
        report = self.verify(extra_anchors=extra_anchors)
        if not report.ok:
            raise AuditIntegrityError(report)
        return report


class _Obj:
    """Attribute access over a dict (rows read for verification, rows just written)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.__dict__.update(data)
