"""The hub's database access: engines, migrations, and the typed :class:`Store`.

SQLAlchemy Core on SQLite (default) or PostgreSQL (``HUB_DATABASE_URL``); the schema is declared in
:mod:`hub.db.schema` and managed by Alembic migrations (``hub/db/migrations``). The store covers the
ingest log (the outbox of accepted events), dead letters and worker heartbeats.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from hub.core.errors import StoreError
from hub.db.engine import first_line as _first_line
from hub.db.engine import make_engine
from hub.db.schema import dead_letters, ingest_log, worker_status
from hub.db.schema_version import check_schema, migrate
from hub.wire.sealing import KeyVault

#: Bound parameters per IN list (well under SQLite's 32,766 and PostgreSQL's 65,535).
_IN_CHUNK = 2000


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything the hub stores is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class LogRecord:
    seq: int
    event_id: str
    source_system: str
    source_id: str
    source_version: int
    record_type: str
    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, bytes]]
    occurred_at: datetime
    received_at: datetime
    published: bool
    erased: bool = False


def _headers_to_text(headers: Sequence[tuple[str, bytes]]) -> str:
    return json.dumps([[k, v.decode()] for k, v in headers])


def _headers_from_text(text: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in json.loads(text)]


def _row_to_log(row: Any) -> LogRecord:
    return LogRecord(
        seq=row.seq, event_id=row.event_id, source_system=row.source_system, source_id=row.source_id,
        source_version=row.source_version, record_type=row.record_type, topic=row.topic, key=row.key,
        value=bytes(row.value), headers=_headers_from_text(row.headers), occurred_at=as_utc(row.occurred_at),
        received_at=as_utc(row.received_at), published=row.published_at is not None,
        erased=row.erased_at is not None,
    )


_VAULTS: weakref.WeakKeyDictionary[Engine, KeyVault] = weakref.WeakKeyDictionary()


class Store:
    """Typed access to the hub's tables. Synchronous; call from a thread in async code."""

    def __init__(self, engine: Engine, vault: KeyVault | None = None) -> None:
        self.engine = engine
        if vault is not None:
            self.vault = vault

    @property
    def vault(self) -> KeyVault | None:
        """The data keys sealed columns use, one key vault per database engine (every store on the engine,
        and code holding one of its connections, finds it); :mod:`hub.db.sealed` opens one from the settings
        when none was set."""
        return _VAULTS.get(self.engine)

    @vault.setter
    def vault(self, vault: KeyVault) -> None:
        _VAULTS[self.engine] = vault

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> Store:
        """A store on ``url``: its schema migrated to the latest revision, or (``migrate_schema=False``)
        checked to be at it (:func:`check_schema`)."""
        engine = make_engine(url)
        try:
            if migrate_schema:
                migrate(engine)
            else:
                check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    # ---- ingest log -------------------------------------------------------------------------
    def existing_versions(self, keys: Iterable[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """The (source system, source id, version) keys of ``keys`` already in the ingest log.

        One index range per source system (``source_system = ? AND source_id IN (...)``, a prefix of
        the unique index) instead of a row-value IN list, which SQLite cannot use the index for.
        """
        wanted = set(keys)
        if not wanted:
            return set()
        c = ingest_log.c
        by_system: dict[str, set[str]] = {}
        for system, source_id, _ in wanted:
            by_system.setdefault(system, set()).add(source_id)
        found: set[tuple[str, str, int]] = set()
        with self.engine.connect() as conn:
            for system, ids in by_system.items():
                id_list = sorted(ids)
                for i in range(0, len(id_list), _IN_CHUNK):
                    rows = conn.execute(
                        sa.select(c.source_system, c.source_id, c.source_version).where(
                            c.source_system == system, c.source_id.in_(id_list[i:i + _IN_CHUNK]))
                    )
                    found.update(k for k in ((r[0], r[1], r[2]) for r in rows) if k in wanted)
        return found

    def known_versions(self, keys: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str], dict[int, str | None]]:
        """Every logged version (with its content digest) of the source records ``keys`` name."""
        c = ingest_log.c
        by_system: dict[str, set[str]] = {}
        for system, source_id, _ in keys:
            by_system.setdefault(system, set()).add(source_id)
        found: dict[tuple[str, str], dict[int, str | None]] = {}
        with self.engine.connect() as conn:
            for system, ids in by_system.items():
                id_list = sorted(ids)
                for i in range(0, len(id_list), _IN_CHUNK):
                    rows = conn.execute(sa.select(c.source_id, c.source_version, c.content_digest).where(
                        c.source_system == system, c.source_id.in_(id_list[i:i + _IN_CHUNK])))
                    for source_id, version, digest in rows:
                        found.setdefault((system, source_id), {})[version] = digest
        return found

    def append(self, rows: Sequence[dict[str, Any]], *, skip_existing: bool = False,
               then: Callable[[Connection], object] | None = None) -> list[int]:
        """Insert accepted event versions; return their seq numbers. Rows carry headers as pairs.

        With ``skip_existing`` a row whose (source system, source id, version) is already logged is
        left alone (``ON CONFLICT DO NOTHING`` on the unique constraint, one statement for the chunk,
        also when a concurrent transaction inserted it first) and its seq is ``0`` in the answer; the
        seqs of the inserted rows are in row order. Without it a duplicate raises ``IntegrityError``.
        ``then(conn)`` runs in the same transaction after the insert (an audit record of the change):
        if it raises, nothing is logged.
        """
        if not rows:
            return []
        prepared = [{**r, "headers": _headers_to_text(r["headers"])} for r in rows]
        try:
            with self.engine.begin() as conn:
                seqs = self._insert_log(conn, rows, prepared, skip_existing)
                if then is not None:
                    then(conn)
                return seqs
        except sa.exc.IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record accepted events: {_first_line(exc)}") from exc

    @staticmethod
    def _insert_log(conn: Connection, rows: Sequence[dict[str, Any]], prepared: list[dict[str, Any]],
                    skip_existing: bool) -> list[int]:
        dialect = conn.dialect.name
        if skip_existing and dialect in ("sqlite", "postgresql"):
            c = ingest_log.c
            insert = sqlite_insert if dialect == "sqlite" else pg_insert
            stmt = (insert(ingest_log)
                    .on_conflict_do_nothing(index_elements=[c.source_system, c.source_id, c.source_version])
                    .returning(c.seq, c.source_system, c.source_id, c.source_version))
            seq_of = {(r[1], r[2], r[3]): r[0] for r in conn.execute(stmt, prepared)}
            return [seq_of.pop((r["source_system"], r["source_id"], r["source_version"]), 0) for r in rows]
        if dialect in ("sqlite", "postgresql"):
            result = conn.execute(ingest_log.insert().returning(ingest_log.c.seq), prepared)
            return [r[0] for r in result]
        seqs = []
        for row in prepared:
            if skip_existing:
                nested = conn.begin_nested()
                try:
                    key = conn.execute(ingest_log.insert(), row).inserted_primary_key
                except sa.exc.IntegrityError:
                    nested.rollback()
                    seqs.append(0)
                    continue
                nested.commit()
            else:
                key = conn.execute(ingest_log.insert(), row).inserted_primary_key
            seqs.append(int(key[0]) if key else 0)
        return seqs

    def mark_published(self, seqs: Sequence[int]) -> None:
        """Record the broker's acknowledgement: one UPDATE per up to 2,000 seqs, in one transaction."""
        if not seqs:
            return
        now = utcnow()
        ordered = sorted(set(seqs))
        c = ingest_log.c
        with self.engine.begin() as conn:
            for i in range(0, len(ordered), _IN_CHUNK):
                chunk = ordered[i:i + _IN_CHUNK]
                if chunk[-1] - chunk[0] + 1 == len(chunk):  # contiguous: a range is all of them, none other
                    where = c.seq.between(chunk[0], chunk[-1])
                else:
                    where = c.seq.in_(chunk)
                conn.execute(ingest_log.update().where(where).values(published_at=now))

    def mark_refused(self, seqs: Sequence[int]) -> None:
        """The broker refused these rows for good (they are dead-lettered): the relay passes them by."""
        with self.engine.begin() as conn:
            conn.execute(ingest_log.update().where(ingest_log.c.seq.in_(list(seqs))).values(refused_at=utcnow()))

    def oldest_unpublished(self) -> datetime | None:
        """When the oldest row still waiting for the broker was accepted (None: the outbox is empty)."""
        c = ingest_log.c
        q = sa.select(sa.func.min(c.received_at)).where(c.published_at.is_(None), c.erased_at.is_(None),
                                                         c.refused_at.is_(None))
        with self.engine.connect() as conn:
            value = conn.execute(q).scalar_one()
        return as_utc(value) if value is not None else None

    def mark_all_unpublished(self) -> int:
        """Every row but erased and refused ones is to be published again (a new, empty broker)."""
        c = ingest_log.c
        with self.engine.begin() as conn:
            return conn.execute(ingest_log.update().where(c.erased_at.is_(None), c.refused_at.is_(None))
                                .values(published_at=None)).rowcount or 0

    def log_by_source(self, keys: Iterable[tuple[str, str, int]]) -> list[LogRecord]:
        wanted = set(keys)
        if not wanted:
            return []
        c = ingest_log.c
        by_system: dict[str, set[str]] = {}
        for system, source_id, _ in wanted:
            by_system.setdefault(system, set()).add(source_id)
        out: list[LogRecord] = []
        with self.engine.connect() as conn:
            for system, ids in by_system.items():
                id_list = sorted(ids)
                for i in range(0, len(id_list), _IN_CHUNK):
                    rows = conn.execute(sa.select(ingest_log).where(
                        c.source_system == system, c.source_id.in_(id_list[i:i + _IN_CHUNK])).order_by(c.seq))
                    out.extend(_row_to_log(r) for r in rows if (r.source_system, r.source_id, r.source_version)
                               in wanted)
        out.sort(key=lambda r: r.seq)
        return out

    def trace_headers(self, versions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], list[tuple[str, bytes]]]:
        """The W3C trace headers (``traceparent``, ``tracestate``) each logged (event id, version) was
        accepted with, for spans that continue its trace (:mod:`hub.core.tracing`); none for the others."""
        wanted = set(versions)
        c = ingest_log.c
        ids = sorted({e for e, _ in wanted})
        out: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                for r in conn.execute(sa.select(c.event_id, c.source_version, c.headers).where(
                        c.event_id.in_(ids[i:i + _IN_CHUNK]))):
                    if (r.event_id, r.source_version) in wanted:
                        trace = [(k, v) for k, v in _headers_from_text(r.headers) if k in ("traceparent", "tracestate")]
                        if trace:
                            out[(r.event_id, r.source_version)] = trace
        return out

    def iter_log(self, *, after_seq: int = 0, unpublished_only: bool = False,
                 batch: int = 2000) -> Iterator[list[LogRecord]]:
        c = ingest_log.c
        last = after_seq
        while True:
            q = sa.select(ingest_log).where(c.seq > last).order_by(c.seq).limit(batch)
            if unpublished_only:
                q = q.where(c.published_at.is_(None), c.erased_at.is_(None), c.refused_at.is_(None))
            with self.engine.connect() as conn:
                rows = [_row_to_log(r) for r in conn.execute(q)]
            if not rows:
                return
            yield rows
            last = rows[-1].seq

    def iter_log_values(self, *, batch: int = 5000) -> Iterator[list[tuple[int, bytes, bool]]]:
        """(seq, value, erased) of every logged event in seq order: all a replay decodes, without building a
        :class:`LogRecord` (headers parsed, times converted) per row."""
        c = ingest_log.c
        last = 0
        while True:
            q = (sa.select(c.seq, c.value, c.erased_at.is_not(None)).where(c.seq > last).order_by(c.seq)
                 .limit(batch))
            with self.engine.connect() as conn:
                rows = [(int(r[0]), bytes(r[1]), bool(r[2])) for r in conn.execute(q)]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def log_record(self, seq: int) -> LogRecord | None:
        """One logged event by its seq."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ingest_log).where(ingest_log.c.seq == seq)).first()
        return _row_to_log(row) if row is not None else None

    def log_count(self, *, unpublished_only: bool = False) -> int:
        q = sa.select(sa.func.count()).select_from(ingest_log)
        if unpublished_only:
            q = q.where(ingest_log.c.published_at.is_(None), ingest_log.c.refused_at.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    # ---- dead letters ---------------------------------------------------------------------
    def add_dead_letter(self, *, topic: str, partition: int | None, offset: int | None, key: str | None,
                        value: bytes, headers: Sequence[tuple[str, bytes]], error: BaseException) -> bool:
        """Record a dead letter once per topic/partition/offset; False if it was already there."""
        row = dict(topic=topic, partition=partition, offset=offset, key=key, value=value,
                   headers=_headers_to_text(headers), error_class=type(error).__name__,
                   error_message=str(error)[:2000], failed_at=utcnow())
        try:
            with self.engine.begin() as conn:
                conn.execute(dead_letters.insert(), row)
            return True
        except sa.exc.IntegrityError:
            return False

    def dead_letter_count(self) -> int:
        """Dead letters not yet replayed: one count, not the rows."""
        q = sa.select(sa.func.count()).select_from(dead_letters).where(dead_letters.c.replayed_at.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def dead_letters(self, *, include_replayed: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(dead_letters).order_by(dead_letters.c.id).limit(limit)
        if not include_replayed:
            q = q.where(dead_letters.c.replayed_at.is_(None))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def mark_dead_letters_replayed(self, ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(dead_letters.update().where(dead_letters.c.id.in_(list(ids))).values(replayed_at=utcnow()))

    # ---- workers ----------------------------------------------------------------------------
    def heartbeat(self, worker_id: str, state: str, processed: int) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            updated = conn.execute(worker_status.update().where(worker_status.c.worker_id == worker_id)
                                   .values(state=state, heartbeat_at=now, processed=processed)).rowcount
            if not updated:
                conn.execute(worker_status.insert().values(worker_id=worker_id, state=state, heartbeat_at=now,
                                                           processed=processed))

    def workers(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(worker_status))]
        for r in rows:
            r["heartbeat_at"] = as_utc(r["heartbeat_at"])
        return rows

    def clear_workers(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(worker_status.delete())
