"""Personal data sealed at rest in the hub's own tables: a column value encrypted with a data key.

What the projections keep of a person (a timeline entry's summary and record, a consent as received, a
copy of a report queued for a recipient, an alert's words, a date of birth) is sealed with AES-256-GCM under
a data key from the key vault (:mod:`hub.db.keyvault`), the same keys the ingest log and Kafka values are
sealed with: a timeline entry and a consent under its subject's key, what belongs to a household member (a
date of birth, a delivery or an alert about a child) under the member's key (:func:`member_key`). Shredding
those keys (an erasure) makes every copy unreadable at once, also rows another process or a replica still
holds; a value whose key was shredded reads as erased (:data:`ERASED`), never as an error page.

The associated data is the table, the column and the row's id with the frame's header, so a sealed value
edited, or copied to another row, column or table, fails to open (:class:`~hub.core.errors.UnsealError`,
which names the column and never the value). Nothing is queried by a sealed column's content.

A sealed value is text: ``sealed1:`` and the base64 of::

    offset  size  field
    0       4     data key version (big-endian)
    4       1     n = length of the key's subject (ASCII)
    5       n     the key's subject: a pseudonym, or ``member:<member id>``
    5+n     12    nonce (random)
    17+n    ...   AES-256-GCM ciphertext of the UTF-8 text, then the 16-byte tag
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from sqlalchemy.engine import Connection

from hub.core.errors import ErasedRecordError, UnsealError
from hub.core.settings import Settings, load_settings
from hub.db.keyvault import ConnectionKeyVault, SqlKeyVault, load_keyring
from hub.db.store import Store
from hub.wire.sealing import KeyVault

PREFIX = "sealed1:"
ERASED = "[erased]"
_HEAD = struct.Struct(">IB")  # key version, length of the key's subject
_NONCE = 12
_AAD = b"familyhub-column\x00"


def member_key(member_id: str) -> str:
    """The key subject of what belongs to a household member (a child's or parent's member id)."""
    return f"member:{member_id}"[:255]


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _where(column: sa.Column[Any]) -> str:
    return f"{column.table.name}.{column.name}"


def _aad(column: sa.Column[Any], row_id: str, header: bytes) -> bytes:
    return _AAD + b"\x00".join((column.table.name.encode(), column.name.encode(), row_id.encode())) + b"\x00" + header


def _key_of(data: bytes) -> tuple[str, int, int]:
    """The key a sealed value's bytes name, from its header: (subject, version, where the nonce starts). The subject
    may come out shorter than its stated length when the bytes are cut short (the caller checks)."""
    version, n = _HEAD.unpack_from(data)
    return data[_HEAD.size:_HEAD.size + n].decode("ascii"), version, _HEAD.size + n


class Sealer:
    """Seals and opens column values with data keys from ``vault``."""

    def __init__(self, vault: KeyVault) -> None:
        self.vault = vault

    def seal(self, column: sa.Column[Any], row_id: str, key_subject: str, text: str) -> str:
        """``text`` sealed for this column of row ``row_id`` under ``key_subject``'s current data key."""
        key = self.vault.current(key_subject)
        subject = key_subject.encode("ascii")
        header = _HEAD.pack(key.version, len(subject)) + subject
        nonce = os.urandom(_NONCE)
        sealed = key.aead.encrypt(nonce, text.encode("utf-8"), _aad(column, row_id, header))
        return PREFIX + base64.b64encode(header + nonce + sealed).decode("ascii")

    def seal_json(self, column: sa.Column[Any], row_id: str, key_subject: str, value: Any) -> str:
        return self.seal(column, row_id, key_subject, json.dumps(value, separators=(",", ":"), sort_keys=True))

    def open(self, column: sa.Column[Any], row_id: str, value: str) -> str:
        """The text of a sealed value: :class:`ErasedRecordError` once its key was shredded, :class:`UnsealError`
        when it is not a sealed value of this column and row (altered, moved or never sealed)."""
        if not is_sealed(value):
            raise UnsealError(f"{_where(column)} of row {row_id} is not sealed")
        try:
            data = base64.b64decode(value[len(PREFIX):], validate=True)
            subject, version, body = _key_of(data)
        except (binascii.Error, struct.error, UnicodeDecodeError):
            raise UnsealError(f"{_where(column)} of row {row_id} is not a well-formed sealed value") from None
        n = body - _HEAD.size
        if len(subject) != n or len(data) < body + _NONCE + 16:
            raise UnsealError(f"{_where(column)} of row {row_id} is truncated")
        key = self.vault.get(subject, version)  # ErasedRecordError once shredded
        try:
            plain = key.aead.decrypt(data[body:body + _NONCE], data[body + _NONCE:], _aad(column, row_id, data[:body]))
        except InvalidTag:
            raise UnsealError(f"{_where(column)} of row {row_id} failed authentication "
                              "(altered, or moved from another row)") from None
        return plain.decode("utf-8")

    def prefetch(self, values: Iterable[str | None]) -> None:
        """Have the vault load at once the keys of many sealed values about to be opened (where it keeps keys in a
        database: ``prefetch`` of :class:`hub.db.keyvault.SqlKeyVault` and
        :class:`hub.db.keyvault.ConnectionKeyVault`). Values that are not well-formed are left for :meth:`open`
        to refuse."""
        if not isinstance(self.vault, SqlKeyVault | ConnectionKeyVault):
            return
        wanted: set[tuple[str, int]] = set()
        for value in values:
            if value is None or not is_sealed(value):
                continue
            try:  # the header alone: version, subject length, subject (at most 260 bytes, 348 base64 characters)
                subject, version, _body = _key_of(base64.b64decode(value[len(PREFIX):len(PREFIX) + 348],
                                                                   validate=True))
            except (binascii.Error, struct.error, UnicodeDecodeError):
                continue
            wanted.add((subject, version))
        self.vault.prefetch(wanted)

    def prefetch_current(self, subjects: Iterable[str]) -> None:
        """Have the vault find at once the current keys of many subjects about to be sealed for (where it keeps
        keys in a database: ``prefetch_current`` of :class:`hub.db.keyvault.SqlKeyVault` and
        :class:`hub.db.keyvault.ConnectionKeyVault`)."""
        if isinstance(self.vault, SqlKeyVault | ConnectionKeyVault):
            self.vault.prefetch_current(subjects)

    def text(self, column: sa.Column[Any], row_id: str, value: str, erased: str = ERASED) -> str:
        """The text, or ``erased`` once the key was shredded."""
        try:
            return self.open(column, row_id, value)
        except ErasedRecordError:
            return erased

    def json(self, column: sa.Column[Any], row_id: str, value: str, erased: Any = None) -> Any:
        """The JSON value, or ``erased`` once the key was shredded."""
        try:
            return json.loads(self.open(column, row_id, value))
        except ErasedRecordError:
            return erased

    def seal_date(self, column: sa.Column[Any], row_id: str, key_subject: str, value: date | None) -> str | None:
        return None if value is None else self.seal(column, row_id, key_subject, value.isoformat())

    def date(self, column: sa.Column[Any], row_id: str, value: str | None) -> date | None:
        """The date, or None when there is none or its key was shredded (an erased person has no birth date)."""
        if value is None:
            return None
        try:
            return date.fromisoformat(self.open(column, row_id, value))
        except ErasedRecordError:
            return None


def _settings_of(store: Store) -> Settings:
    """This process's settings, for a store opened without a key vault. A process configured with no database
    URL and no master key owns ``<data dir>/hub.db``; an SQLite file it opens is a hub's own file in its data
    directory, so that directory's master key file is the one (the same for ``<data dir>/hub.db`` itself)."""
    settings = load_settings()
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database and not settings.database_url \
            and not settings.payload_master_key.get_secret_value() and settings.payload_master_key_file is None:
        return settings.model_copy(update={"data_dir": Path(url.database).parent})
    return settings


def sealer(store: Store) -> Sealer:
    """The sealer of ``store``'s key vault; a store opened without one takes this process's settings' keys
    (the key vault every process of the hub opens)."""
    vault = store.vault
    if vault is None:
        vault = store.vault = SqlKeyVault(store, load_keyring(_settings_of(store)))
    return Sealer(vault)


def sealer_of(conn: Connection) -> Sealer:
    """The sealer for code given a connection inside its transaction: keys are read, and a member's first key
    created, on that connection (another connection would wait for this transaction's write lock)."""
    store = Store(conn.engine)
    vault = store.vault
    keyring = vault.keyring if isinstance(vault, SqlKeyVault) else load_keyring(_settings_of(store))
    return Sealer(ConnectionKeyVault(conn, keyring))
