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
:func:`hub.logging.scrub_text`; if that would change it (an NHS-number-, UPN- or bare-date-shaped
value) the record is refused with ``ValueError``, as are keys that name personal data (``name``,
``dob``, ``nhs_number`` …). Use timestamps (``2026-01-02T10:00:00Z``), not bare dates, in details.

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
database superuser) can produce a consistent forgery that verify cannot detect, and records appended
after the last anchor with correct links are indistinguishable from genuine ones. Ship anchors off
the database — e.g. an ``anchor_sink`` that publishes them to the audit Kafka topic, or an external
WORM/object-lock store — and compare them with :meth:`AuditLog.verify` (``extra_anchors=``).
Verify holds the whole log in memory (a few hundred bytes per record).

IG queries: :func:`who_has_seen`, :func:`withheld`, :func:`overrides` / :func:`review_override`,
:func:`consent_history`, :func:`transparency_view`. Exports (FHIR R4 AuditEvent, CSV) are in
:mod:`hub.audit_export`; the ``hub audit`` commands in :mod:`hub.audit_cli`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from hub.core.errors import AuditIntegrityError, NotFoundError, StoreError, ValidationError
from hub.core.logging import _PERSONAL_KEYS, scrub_text
from hub.db.store import TS, Store, as_utc, metadata, utcnow

GENESIS = "0" * 64
HASH_VERSION = 1
# Arbitrary constant key for pg_advisory_xact_lock ("audit" in ASCII); no other hub lock uses it.
PG_LOCK_KEY = 0x6175646974

#: Every action the audit log accepts, with what it means. Extend with :func:`register_action`.
ACTIONS: dict[str, str] = {
    "share": "information about a child was sent to a recipient (report, timeline extract, event)",
    "withhold": "information was not shared (no consent, rule refused, sensitive category)",
    "hold": "sharing was paused pending a decision (e.g. awaiting consent or review)",
    "release": "a held item was released for sharing",
    "override": "a safeguarding override shared or revealed information without the usual consent",
    "override_review": "an IG/safeguarding lead reviewed an override (data_ref = audit:<seq>)",
    "consent_change": "a consent was given, changed or withdrawn",
    "identity_link": "a source subject was linked to a child / household",
    "identity_unlink": "such a link was removed",
    "read_timeline": "a family timeline was viewed",
    "read_report": "a report was viewed or downloaded",
    "export": "records were exported in bulk (including audit exports)",
    "erasure": "data was erased (right to erasure, retention)",
    "login_denied": "a sign-in or access attempt was refused",
}
READ_ACTIONS = frozenset({"read_timeline", "read_report"})
SEEN_ACTIONS = READ_ACTIONS | {"share"}
WITHHELD_ACTIONS = frozenset({"withhold", "hold"})

Kind = Literal["ALTERED", "DELETED", "REORDERED", "INSERTED"]
KINDS: tuple[Kind, ...] = ("ALTERED", "DELETED", "REORDERED", "INSERTED")


def register_action(name: str, description: str) -> None:
    """Allow a new action name (lower-case, ``[a-z_]``); re-registering the same name is fine."""
    if not name or not name.replace("_", "").isalpha() or not name.islower() or len(name) > 40:
        raise ValueError(f"audit action names are lower-case letters and underscores, got {name!r}")
    ACTIONS[name] = description


audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("recorded_at", TS, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("actor_role", sa.String(120), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("subject_household", sa.String(80), nullable=True),
    sa.Column("subject_child", sa.String(80), nullable=True),
    sa.Column("data_ref", sa.String(200), nullable=True),
    sa.Column("purpose", sa.String(200), nullable=True),
    sa.Column("legal_basis", sa.String(200), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
sa.Index("ix_audit_household", audit_log.c.subject_household, audit_log.c.seq)
sa.Index("ix_audit_action", audit_log.c.action, audit_log.c.seq)
sa.Index("ix_audit_data_ref", audit_log.c.data_ref)

audit_anchors = sa.Table(
    "audit_anchors", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("anchored_at", TS, nullable=False),
)


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


def _iso(value: datetime) -> str:
    return as_utc(value).astimezone(UTC).isoformat(timespec="microseconds")


def _canonical_detail(detail: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def compute_hash(fields: Mapping[str, Any], prev_hash: str) -> str:
    """SHA-256 hex over the canonical JSON of a record's hashed fields and the previous hash.

    ``fields`` holds ``recorded_at`` (datetime or ISO string), the text columns and ``detail`` as the
    stored JSON text.
    """
    at = fields["recorded_at"]
    doc = {
        "v": HASH_VERSION,
        "recorded_at": _iso(at) if isinstance(at, datetime) else str(at),
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
        for key, value in detail.items():
            k = str(key)
            if k.lower() in _PERSONAL_KEYS or scrub_text(k) != k:
                raise ValueError(f"audit {path}: key {scrub_text(k)!r} names personal data; audit details "
                                 "must not hold personal identifiers")
            check_detail(value, f"{path}.{k}")
    elif isinstance(detail, list | tuple):
        for i, value in enumerate(detail):
            check_detail(value, f"{path}[{i}]")
    elif isinstance(detail, str) and scrub_text(detail) != detail:
        raise ValueError(f"audit {path} looks like it holds an NHS number, UPN or date of birth; audit details "
                         "must not hold personal identifiers (use pseudonymous ids and full timestamps)")


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

    def record(self, action: str, *, actor: str, actor_role: str = "", subject_household: str | None = None,
               subject_child: str | None = None, data_ref: str | None = None, purpose: str | None = None,
               legal_basis: str | None = None, detail: Mapping[str, Any] | None = None,
               source: str | None = None) -> AuditRecord:
        """Append one record and return it (with seq and hash)."""
        return self.record_many([AuditEntry(
            action=action, actor=actor, actor_role=actor_role, subject_household=subject_household,
            subject_child=subject_child, data_ref=data_ref, purpose=purpose, legal_basis=legal_basis,
            detail=detail, source=source)])[0]

    def record_many(self, entries: Iterable[AuditEntry | Mapping[str, Any]]) -> list[AuditRecord]:
        """Append several records in one transaction, chained in the order given."""
        prepared = [self._prepare(e if isinstance(e, AuditEntry) else AuditEntry(**e)) for e in entries]
        if not prepared:
            return []
        anchors: list[Anchor] = []
        try:
            with self._write_tx() as conn:
                last = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash, audit_log.c.recorded_at)
                                    .order_by(audit_log.c.seq.desc()).limit(1)).first()
                seq, prev, last_at = (int(last.seq), last.hash, as_utc(last.recorded_at)) if last else \
                    (0, GENESIS, None)
                now = utcnow()
                at = max(now, last_at) if last_at is not None else now
                rows = []
                for fields in prepared:
                    seq += 1
                    row = {**fields, "seq": seq, "recorded_at": at, "prev_hash": prev}
                    row["hash"] = prev = compute_hash(row, row["prev_hash"])
                    rows.append(row)
                    if self.anchor_every > 0 and seq % self.anchor_every == 0:
                        anchors.append(Anchor(seq, row["hash"], at))
                conn.execute(audit_log.insert(), rows)
                if anchors:
                    conn.execute(audit_anchors.insert(),
                                 [{"seq": a.seq, "hash": a.hash, "anchored_at": a.anchored_at} for a in anchors])
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write the audit log: {_first_line(exc)}") from exc
        for a in anchors:
            self._ship(a)
        return [_row_to_record(_Obj(r)) for r in rows]

    @staticmethod
    def _prepare(e: AuditEntry) -> dict[str, Any]:
        if e.action not in ACTIONS:
            raise ValueError(f"unknown audit action {e.action!r}; known: {', '.join(sorted(ACTIONS))} "
                             "(add one with hub.audit.register_action)")
        if not e.actor:
            raise ValueError("an audit record needs an actor (user id or system component)")
        if e.detail is not None and not isinstance(e.detail, Mapping):
            raise ValueError("audit detail must be a JSON object")
        check_detail(dict(e.detail or {}))
        return {
            "actor": e.actor, "actor_role": e.actor_role or "", "action": e.action,
            "subject_household": e.subject_household, "subject_child": e.subject_child,
            "data_ref": e.data_ref, "purpose": e.purpose, "legal_basis": e.legal_basis,
            "detail": _canonical_detail(e.detail), "source": e.source,
        }

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


_HASHED = ("recorded_at", "actor", "actor_role", "action", "subject_household", "subject_child", "data_ref",
           "purpose", "legal_basis", "detail", "source")


def _fields(row: Any) -> dict[str, Any]:
    return {k: getattr(row, k) for k in _HASHED}


def verify_rows(rows: Sequence[Any], anchors: Sequence[Anchor] = ()) -> VerifyReport:
    """The verification algorithm over rows (attribute access, any order); see the module docstring."""
    rows = sorted(rows, key=lambda r: int(r.seq))
    problems: dict[tuple[int, str], AuditProblem] = {}

    def add(seq: int, kind: Kind, message: str) -> None:
        problems.setdefault((seq, kind), AuditProblem(seq, kind, message))

    n = len(rows)
    seqs = [int(r.seq) for r in rows]
    true_hash = [compute_hash(_fields(r), r.prev_hash) for r in rows]
    content_ok = [true_hash[i] == rows[i].hash for i in range(n)]
    index_of_seq = {s: i for i, s in enumerate(seqs)}

    # 1. gaps in seq
    expected = 1
    gap_before: set[int] = set()
    for i, s in enumerate(seqs):
        if s > expected:
            gap_before.add(i)
            for missing in range(expected, s):
                add(missing, "DELETED", f"record missing (seq {expected}–{s - 1} absent)")
        expected = s + 1
    max_seq = seqs[-1] if seqs else 0

    # 2. links: a row can be followed via its stored hash or, if that column was edited, its content hash
    succ: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        succ[r.prev_hash].append(i)
    known_hashes = {r.hash for r in rows} | set(true_hash)

    def successors(i: int) -> list[int]:
        out = list(succ.get(rows[i].hash, ()))
        if true_hash[i] != rows[i].hash:
            out += [j for j in succ.get(true_hash[i], ()) if j not in out]
        return [j for j in out if j != i]

    # 3. content that only hashes with another row's links: a swap of the data columns (REORDERED); content
    #    that hashes with an earlier row's hash as prev_hash: its link was re-pointed at rows spliced in.
    explained: set[int] = set()
    bad = [i for i in range(n) if not content_ok[i]]
    for i in bad:
        for j in bad:
            if j != i and compute_hash(_fields(rows[i]), rows[j].prev_hash) == rows[j].hash:
                add(seqs[i], "REORDERED", f"its content belongs at seq {seqs[j]} (contents of two seqs swapped)")
                explained.add(i)
                break
    spliced: set[int] = set()
    for i in bad:
        if i in explained:
            continue
        for back in range(2, 7):
            k = i - back
            if k < -1:
                break
            cand = GENESIS if k < 0 else rows[k].hash
            if compute_hash(_fields(rows[i]), cand) == rows[i].hash:
                for m in range(max(k, -1) + 1, i):
                    spliced.add(m)
                    add(seqs[m], "INSERTED", f"spliced in before seq {seqs[i]}, whose link was re-pointed to it")
                explained.add(i)
                break

    # 4. rebuild the chain: from the genesis record, then from each orphan (a record linking to nothing)
    depth = _chain_depths(n, successors)
    visited: set[int] = set()
    order: list[int] = []
    verdict: dict[int, str] = {}

    def walk(start: int) -> None:
        cur = start
        while cur not in visited:
            visited.add(cur)
            order.append(cur)
            cands = [j for j in successors(cur) if j not in visited]
            if not cands:
                return
            here = seqs[cur]
            cands.sort(key=lambda j: (-depth[j], seqs[j] != here + 1, seqs[j]))
            for other in cands[1:]:
                verdict.setdefault(other, f"links to seq {here}, which already has a successor (seq {seqs[cands[0]]})")
            cur = cands[0]

    genesis_roots = [i for i in range(n) if rows[i].prev_hash == GENESIS]
    if genesis_roots:
        walk(genesis_roots[0])
    for i in genesis_roots[1:]:
        verdict.setdefault(i, "a second record claims to start the chain")
    for i in range(n):
        if i in visited or rows[i].prev_hash == GENESIS or rows[i].prev_hash in known_hashes:
            continue
        if i in gap_before:  # explained by the reported gap
            walk(i)
        elif content_ok[i]:
            prev_seq = seqs[i - 1] if i > 0 else 0
            add(seqs[i], "DELETED", f"the record before it in the chain is missing (its prev_hash matches no "
                                    f"record): removed and later seqs renumbered, or seq {prev_seq} re-hashed")
            walk(i)
        else:
            verdict.setdefault(i, "forged: its hash matches its content and its prev_hash matches no record")
            explained.add(i)
    for i in range(n):
        if i not in visited and i not in spliced:
            add(seqs[i], "INSERTED", verdict.get(i, "not reachable along the chain (forged branch)"))

    # 5. content edits
    for i in bad:
        if i not in explained and i in visited:
            add(seqs[i], "ALTERED", "content does not match its hash (a column was edited)")

    # 6. seq order vs chain order (whole-row swaps)
    chain_seqs = [seqs[i] for i in order if i not in spliced]
    for got, want in zip(chain_seqs, sorted(chain_seqs), strict=True):
        if got != want:
            add(got, "REORDERED", f"the chain places it where seq {want} should be (rows swapped)")

    # 7. recorded_at vs seq among sound records (a swap with the chain re-hashed after it)
    flagged = {s for s, _ in problems}
    sound = [i for i in order if content_ok[i] and seqs[i] not in flagged]
    by_seq = sorted(sound, key=lambda i: seqs[i])
    by_time = sorted(sound, key=lambda i: (as_utc(rows[i].recorded_at), seqs[i]))
    for a, b in zip(by_seq, by_time, strict=True):
        if a != b:
            add(seqs[a], "REORDERED", "its recorded_at contradicts its seq (recorded_at goes backwards)")

    # 8. anchors: truncated tail, or a chain rewritten from some point on
    for anc in anchors:
        at = index_of_seq.get(anc.seq)
        if at is None:
            if anc.seq > max_seq:
                for missing in range(max_seq + 1, anc.seq + 1):
                    add(missing, "DELETED", f"anchored at {_iso(anc.anchored_at)} but missing (log truncated "
                                            f"after seq {max_seq})")
            else:
                add(anc.seq, "DELETED", f"anchored at {_iso(anc.anchored_at)} but missing")
        elif rows[at].hash != anc.hash:
            add(anc.seq, "ALTERED", f"its hash differs from the anchor taken at {_iso(anc.anchored_at)} "
                                    "(the chain was rewritten)")

    ordered = sorted(problems.values(), key=lambda p: (p.seq, KINDS.index(p.kind)))
    return VerifyReport(records=n, problems=ordered, anchors_checked=len(anchors),
                        last_seq=max_seq, last_hash=rows[-1].hash if rows else GENESIS)


def _chain_depths(n: int, successors: Callable[[int], list[int]]) -> list[int]:
    """Length of the longest chain continuing from each row (iterative; cycles are cut)."""
    depth = [0] * n
    state = [0] * n  # 0 new, 1 on stack, 2 done
    for start in range(n - 1, -1, -1):
        if state[start]:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(start, iter(successors(start)))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            advanced = False
            for nxt in it:
                if state[nxt] == 0:
                    state[nxt] = 1
                    stack.append((nxt, iter(successors(nxt))))
                    advanced = True
                    break
            if not advanced:
                stack.pop()
                state[node] = 2
                depth[node] = 1 + max((depth[j] for j in successors(node) if state[j] == 2), default=0)
    return depth


# ---- IG queries ---------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class TransparencyEntry:
    """One line of what a family may see: who received or viewed their child's information."""

    at: datetime
    what: str  # "received" | "viewed"
    who: str
    role: str
    child: str | None
    item: str | None
    purpose: str | None
    legal_basis: str | None


def transparency_view(source: AuditLog | Store, household: str) -> list[TransparencyEntry]:
    """A family's own view: who received or viewed their child's information, when and on what basis.

    Share and read records only, without internal detail, hashes or source addresses.
    """
    return [
        TransparencyEntry(at=r.recorded_at, what="received" if r.action == "share" else "viewed", who=r.actor,
                          role=r.actor_role, child=r.subject_child, item=r.data_ref, purpose=r.purpose,
                          legal_basis=r.legal_basis)
        for r in _as_log(source).records(household=household, actions=SEEN_ACTIONS)
    ]
