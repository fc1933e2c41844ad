"""The SQL key vault: per-subject data keys, wrapped by the master key, in table ``subject_keys``.

One row per (subject pseudonym, key version): the data key wrapped with AES-256-GCM under a master
key (:class:`hub.sealing.MasterKeyring`), the id of that master key, ``created_at`` and
``shredded_at``. Shredding overwrites the wrapped key with NULL and sets ``shredded_at``; the row
stays, so a record sealed with that version is recognised as *erased* rather than unknown.

Unwrapped keys are cached in memory per process (at most ``cache_size`` keys, each for at most
``ttl`` seconds), so sealing and opening cost one AES-GCM operation per record, not a database
round trip. :meth:`SqlKeyVault.shred` drops the shredded keys from this process's cache; other
processes drop theirs when the entry expires, and meanwhile the erasure guard
(:mod:`hub.erasure_guard`) keeps records of erased subjects out of every projection.

The master key comes from ``HUB_PAYLOAD_MASTER_KEY`` or ``HUB_PAYLOAD_MASTER_KEY_FILE`` (one key per
line, current first, previous keys after it for rotation) or, on the embedded default, a file
created on first start in ``<data dir>/keys/payload-master.key`` with mode 0600.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from hub.core.errors import ConfigError, ErasedRecordError, UnsealError
from hub.core.settings import Settings
from hub.db.schema import subject_keys
from hub.db.store import Store, utcnow
from hub.wire.registry import registry_config
from hub.wire.schemas import SchemaCatalogue
from hub.wire.sealing import DataKey, MasterKeyring, SealingSerde, data_key, new_data_key
from hub.wire.serde import make_serde

K = subject_keys.c
_IN_CHUNK = 2000


def load_keyring(settings: Settings) -> MasterKeyring:
    """The payload master keyring from the settings, creating the embedded default key on first start."""
    if settings.payload_master_key.get_secret_value():
        return MasterKeyring.from_text(settings.payload_master_key.get_secret_value())
    path = settings.payload_master_key_file or settings.data_dir / "keys" / "payload-master.key"
    if path.exists():
        return MasterKeyring.from_text(path.read_text())
    if settings.payload_master_key_file is not None:
        raise ConfigError(f"payload master key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = secrets.token_hex(32)
    # written in full under a private name, then linked into place: a process starting at the same
    # moment either creates the key or reads the whole of the other's, never an empty file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process of this hub created it first
        return MasterKeyring.from_text(path.read_text())
    finally:
        tmp.unlink(missing_ok=True)
    return MasterKeyring.from_text(key)


def key_file_of(settings: Settings) -> Path | None:
    """Where the master key is kept (None when it is given in the environment)."""
    if settings.payload_master_key.get_secret_value():
        return None
    return settings.payload_master_key_file or settings.data_dir / "keys" / "payload-master.key"


def _inserted(conn: Connection, insert: Any, row: dict[str, Any]) -> bool:
    """Insert a data key unless that (subject, version) exists; True only when this row went in. Told by the
    row coming back (RETURNING), not by the rowcount: PostgreSQL's driver reports -1 for an INSERT, which
    would read as "inserted" when another process's key had won, and the loser's key would seal what no
    stored key opens."""
    stmt = insert(subject_keys).on_conflict_do_nothing(index_elements=[K.subject, K.version]).returning(K.version)
    return conn.execute(stmt, row).first() is not None


#: (subject, version) pairs a prefetch asks for in one query
PREFETCH_CHUNK = 300


def _live_keys(conn: Connection, keyring: MasterKeyring, wanted: list[tuple[str, int]]) -> Iterator[DataKey]:
    """The live keys among ``wanted`` ((subject, version)), a few hundred a query; unknown and shredded keys are
    left out."""
    for i in range(0, len(wanted), PREFETCH_CHUNK):
        for r in conn.execute(sa.select(K.subject, K.version, K.kek_id, K.wrapped_key).where(
                sa.tuple_(K.subject, K.version).in_(wanted[i:i + PREFETCH_CHUNK]), K.shredded_at.is_(None),
                K.wrapped_key.is_not(None))):
            yield data_key(r.subject, r.version, keyring.unwrap(r.kek_id, r.subject, r.version, bytes(r.wrapped_key)))


def _current_keys(conn: Connection, keyring: MasterKeyring, subjects: list[str]) -> Iterator[DataKey]:
    """The current key of each of ``subjects``, a few hundred a query; a subject with no key yet, or whose newest
    key was shredded, is left out (its next key is made by ``current``)."""
    for i in range(0, len(subjects), PREFETCH_CHUNK):
        newest: dict[str, Any] = {}
        for r in conn.execute(sa.select(K.subject, K.version, K.kek_id, K.wrapped_key, K.shredded_at).where(
                K.subject.in_(subjects[i:i + PREFETCH_CHUNK])).order_by(K.subject, K.version.desc())):
            newest.setdefault(r.subject, r)
        for subject, top in newest.items():
            if top.shredded_at is None and top.wrapped_key is not None:
                yield data_key(subject, top.version,
                               keyring.unwrap(top.kek_id, subject, top.version, bytes(top.wrapped_key)))


class SqlKeyVault:
    """:class:`hub.sealing.KeyVault` over ``subject_keys``; thread-safe, with a bounded in-memory cache."""

    def __init__(self, store: Store, keyring: MasterKeyring, *, cache_size: int = 20000, ttl: float = 60.0) -> None:
        self.store = store
        self.keyring = keyring
        self.cache_size = cache_size
        self.ttl = ttl
        self._keys: OrderedDict[tuple[str, int], tuple[float, DataKey]] = OrderedDict()
        self._current: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- cache --
    def _cached(self, subject: str, version: int) -> DataKey | None:
        with self._lock:
            hit = self._keys.get((subject, version))
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._keys[(subject, version)]
                return None
            self._keys.move_to_end((subject, version))
            return hit[1]

    def _remember(self, key: DataKey, *, current: bool) -> DataKey:
        with self._lock:
            self._keys[(key.subject, key.version)] = (time.monotonic() + self.ttl, key)
            self._keys.move_to_end((key.subject, key.version))
            while len(self._keys) > self.cache_size:
                (subject, _), _ = self._keys.popitem(last=False)
                self._current.pop(subject, None)
            if current:
                self._current[key.subject] = key.version
        return key

    def forget(self, subjects: Iterable[str]) -> None:
        gone = set(subjects)
        with self._lock:
            for k in [k for k in self._keys if k[0] in gone]:
                del self._keys[k]
            for s in gone:
                self._current.pop(s, None)

    # -- KeyVault --
    def current(self, subject: str) -> DataKey:
        version = self._current.get(subject)
        if version is not None and (key := self._cached(subject, version)) is not None:
            return key
        for _ in range(3):
            with self.store.engine.connect() as conn:
                rows = conn.execute(sa.select(K.version, K.kek_id, K.wrapped_key, K.shredded_at)
                                    .where(K.subject == subject).order_by(K.version.desc())).all()
            if rows and rows[0].shredded_at is None and rows[0].wrapped_key is not None:
                top = rows[0]
                raw = self.keyring.unwrap(top.kek_id, subject, top.version, bytes(top.wrapped_key))
                return self._remember(data_key(subject, top.version, raw), current=True)
            # first record of this subject, or all its keys were shredded by an erasure: a new version
            version = (rows[0].version + 1) if rows else 1
            raw = new_data_key()
            kid, wrapped = self.keyring.wrap(subject, version, raw)
            if self._insert(subject, version, kid, wrapped):
                return self._remember(data_key(subject, version, raw), current=True)
            # another process created this version at the same moment: read theirs
        raise UnsealError(f"cannot settle a data key for subject {subject}")

    def _insert(self, subject: str, version: int, kid: str, wrapped: bytes) -> bool:
        row = dict(subject=subject, version=version, kek_id=kid, wrapped_key=wrapped, created_at=utcnow())
        with self.store.engine.begin() as conn:
            dialect = conn.dialect.name
            if dialect in ("sqlite", "postgresql"):
                insert = sqlite_insert if dialect == "sqlite" else pg_insert
                return _inserted(conn, insert, row)
            try:
                with conn.begin_nested():
                    conn.execute(subject_keys.insert(), row)
            except sa.exc.IntegrityError:
                return False
            return True

    def get(self, subject: str, version: int) -> DataKey:
        key = self._cached(subject, version)
        if key is not None:
            return key
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(K.kek_id, K.wrapped_key, K.shredded_at).where(
                K.subject == subject, K.version == version)).first()
        if row is None:
            raise UnsealError(f"no data key {version} for subject {subject} in this hub's key vault")
        if row.shredded_at is not None or row.wrapped_key is None:
            raise ErasedRecordError(f"data key {version} of subject {subject} was shredded: the record is erased")
        raw = self.keyring.unwrap(row.kek_id, subject, version, bytes(row.wrapped_key))
        return self._remember(data_key(subject, version, raw), current=False)

    def prefetch(self, wanted: Iterable[tuple[str, int]]) -> None:
        """Load the keys among ``wanted`` ((subject, version)) that are not cached, a few hundred a query: a pass
        about to open many subjects' values asks the database once, not once a subject. Unknown and shredded
        keys are left for :meth:`get` to report."""
        missing = sorted({w for w in wanted if self._cached(*w) is None})
        if not missing:
            return
        with self.store.engine.connect() as conn:
            for key in _live_keys(conn, self.keyring, missing):
                self._remember(key, current=False)

    def prefetch_current(self, subjects: Iterable[str]) -> None:
        """Load the current keys of the ``subjects`` that have none cached, a few hundred a query: a batch about to
        be sealed (an ingest request) asks the database once, not once a subject. A subject with no key yet, or
        whose newest key was shredded, is left for :meth:`current` (which makes its next key)."""
        missing = sorted({s for s in subjects if (v := self._current.get(s)) is None or self._cached(s, v) is None})
        if not missing:
            return
        with self.store.engine.connect() as conn:
            for key in _current_keys(conn, self.keyring, missing):
                self._remember(key, current=True)

    # -- shredding and rotation --
    def shred(self, conn: Connection, subjects: Iterable[str]) -> int:
        """Destroy every live data key of these subjects in the caller's transaction; how many were live."""
        wanted = sorted(set(subjects))
        now = utcnow()
        done = 0
        for i in range(0, len(wanted), _IN_CHUNK):
            done += conn.execute(subject_keys.update().where(
                K.subject.in_(wanted[i:i + _IN_CHUNK]), K.shredded_at.is_(None)).values(
                wrapped_key=None, kek_id=None, shredded_at=now)).rowcount or 0
        self.forget(wanted)
        return done

    def live_keys(self, conn: Connection, subjects: Iterable[str]) -> int:
        wanted = sorted(set(subjects))
        total = 0
        for i in range(0, len(wanted), _IN_CHUNK):
            total += int(conn.execute(sa.select(sa.func.count()).select_from(subject_keys).where(
                K.subject.in_(wanted[i:i + _IN_CHUNK]), K.shredded_at.is_(None))).scalar_one())
        return total

    def rewrap(self, *, batch: int = 1000) -> int:
        """Re-wrap every live data key not wrapped by the current master key; how many were re-wrapped."""
        current = self.keyring.current_id
        done = 0
        while True:
            with self.store.engine.begin() as conn:
                rows = conn.execute(sa.select(K.subject, K.version, K.kek_id, K.wrapped_key).where(
                    K.shredded_at.is_(None), K.kek_id != current).limit(batch)).all()
                for r in rows:
                    raw = self.keyring.unwrap(r.kek_id, r.subject, r.version, bytes(r.wrapped_key))
                    kid, wrapped = self.keyring.wrap(r.subject, r.version, raw)
                    conn.execute(subject_keys.update().where(K.subject == r.subject, K.version == r.version)
                                 .values(kek_id=kid, wrapped_key=wrapped))
            done += len(rows)
            if len(rows) < batch:
                return done

    def __repr__(self) -> str:
        return f"SqlKeyVault({self.keyring!r})"


class ConnectionKeyVault:
    """:class:`hub.sealing.KeyVault` on one connection, inside its transaction: for code sealing inside a
    transaction of its own (:func:`hub.db.sealed.sealer_of`; a migration sealing what it converts), where
    another connection would wait for this transaction's write lock. Keys are remembered for the vault's life
    only, which is one piece of work in one transaction: make a new one after a savepoint was rolled back."""

    def __init__(self, conn: Connection, keyring: MasterKeyring) -> None:
        self.conn = conn
        self.keyring = keyring
        self._keys: dict[tuple[str, int], DataKey] = {}
        #: the current key of each subject as this vault found or made it: a vault lives for one piece of
        #: work inside one transaction (one batch of rows sealed), so it is asked the database once a subject
        self._current: dict[str, DataKey] = {}

    def current(self, subject: str) -> DataKey:
        known = self._current.get(subject)
        if known is None:
            known = self._current[subject] = self._find_or_make(subject)
        return known

    def prefetch(self, wanted: Iterable[tuple[str, int]]) -> None:
        """Find the keys among ``wanted`` ((subject, version)) not yet found, a few hundred a query: many values
        about to be opened in this transaction ask the database once. Unknown and shredded keys are left for
        :meth:`get` to report."""
        for key in _live_keys(self.conn, self.keyring, sorted({w for w in wanted if w not in self._keys})):
            self._keys[(key.subject, key.version)] = key

    def prefetch_current(self, subjects: Iterable[str]) -> None:
        """Find the current keys of the ``subjects`` not yet found, a few hundred a query: a batch about to be
        sealed in this transaction asks the database once, not once a subject. A subject with no key yet, or
        whose newest key was shredded, is left for :meth:`current` (which makes its next key)."""
        for key in _current_keys(self.conn, self.keyring, sorted({s for s in subjects if s not in self._current})):
            self._keys[(key.subject, key.version)] = self._current[key.subject] = key

    def _find_or_make(self, subject: str) -> DataKey:
        rows = self.conn.execute(sa.select(K.version, K.kek_id, K.wrapped_key, K.shredded_at)
                                 .where(K.subject == subject).order_by(K.version.desc())).all()
        if rows and rows[0].shredded_at is None and rows[0].wrapped_key is not None:
            return self.get(subject, rows[0].version)
        version = (rows[0].version + 1) if rows else 1
        raw = new_data_key()
        kid, wrapped = self.keyring.wrap(subject, version, raw)
        row = dict(subject=subject, version=version, kek_id=kid, wrapped_key=wrapped, created_at=utcnow())
        dialect = self.conn.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            self.conn.execute(subject_keys.insert(), row)
        else:  # another process created this version first (it waited for that one to commit): use theirs
            if not _inserted(self.conn, sqlite_insert if dialect == "sqlite" else pg_insert, row):
                return self.get(subject, version)
        key = self._keys[(subject, version)] = data_key(subject, version, raw)
        return key

    def get(self, subject: str, version: int) -> DataKey:
        if (subject, version) in self._keys:
            return self._keys[(subject, version)]
        row = self.conn.execute(sa.select(K.kek_id, K.wrapped_key, K.shredded_at).where(
            K.subject == subject, K.version == version)).first()
        if row is None:
            raise UnsealError(f"no data key {version} for subject {subject} in this hub's key vault")
        if row.shredded_at is not None or row.wrapped_key is None:
            raise ErasedRecordError(f"data key {version} of subject {subject} was shredded: the record is erased")
        raw = self.keyring.unwrap(row.kek_id, subject, version, bytes(row.wrapped_key))
        key = self._keys[(subject, version)] = data_key(subject, version, raw)
        return key

    def forget(self, subjects: Iterable[str]) -> None:
        gone = set(subjects)
        self._keys = {k: v for k, v in self._keys.items() if k[0] not in gone}
        self._current = {k: v for k, v in self._current.items() if k not in gone}


def sealed_serde(catalogue: SchemaCatalogue, settings: Settings, store: Store) -> SealingSerde:
    """The serde every hub process uses: the configured Avro serde, sealed with per-subject keys."""
    return SealingSerde(make_serde(catalogue, registry_config(settings)),
                        SqlKeyVault(store, load_keyring(settings)))
