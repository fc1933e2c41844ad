"""Sealing: every accepted record is encrypted with its subject's own data key (crypto-shredding).

Each pseudonymous subject has a data key (AES-256, random), kept only *wrapped* by a master key
(:class:`MasterKeyring`) in a key vault (:class:`KeyVault`; the SQL one is :mod:`hub.keyvault`). The
bytes written to the ingest log and to Kafka are the serde's Avro bytes sealed with that key
(AES-256-GCM). Shredding a subject's data keys makes every copy of their records unreadable at
once — ingest log, Kafka topics, dead letters, backups of any of them — without rewriting any
immutable log. This module is pure: no database, no files, no Kafka.

Frame, version 1 (all integers big-endian)::

    offset  size  field
    0       1     magic 0xF5 (Avro single-object encoding starts C3 01, Confluent 00)
    1       1     frame version 0x01
    2       4     data key version (a subject may have several: a new one after an erasure)
    6       16    hub event id (UUID bytes)
    22      1     n = length of the subject pseudonym
    23      n     subject pseudonym (ASCII)
    23+n    12    nonce (random)
    35+n    ...   AES-256-GCM ciphertext of the serde bytes, then the 16-byte tag

The associated data is everything before the nonce, so the subject, the event id and the key
version are authenticated: a sealed value edited, moved to another subject or relabelled as
another event fails with :class:`~hub.errors.UnsealError`; after decoding, the record's own
``meta.subject`` and ``meta.event_id`` must match the frame as well. A subject's pseudonym is in the
frame (it is also the Kafka key and a header) so a value can be opened on its own, wherever it is.

Data keys are wrapped with AES-256-GCM under the current master key, with the subject and key
version as associated data (a wrapped key copied to another subject's row does not unwrap). Each
wrapped key records the id of the master key that wrapped it, so master keys can be rotated:
the keyring holds the current key and any previous ones still needed to unwrap.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.core.errors import ConfigError, UnsealError
from hub.wire.serde import Decoded, Serde

SEAL_MAGIC = 0xF5
SEALED_CONTENT_TYPE = "application/vnd.familyhub.sealed-avro; frame=1"
FRAME_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
_HEAD = struct.Struct(">BBI16sB")  # magic, frame version, key version, event id, subject length
_WRAP_AAD = b"familyhub-data-key\x00"


@dataclass(frozen=True)
class DataKey:
    """One version of a subject's data key, ready to seal and open (the raw key is not kept here)."""

    subject: str
    version: int
    aead: AESGCM


@dataclass(frozen=True)
class Frame:
    """A sealed value taken apart (nothing decrypted yet)."""

    key_version: int
    event_id: str
    subject: str
    header: bytes
    nonce: bytes
    ciphertext: bytes


class KeyVault(Protocol):
    """Where data keys live. Implementations cache unwrapped keys; :meth:`forget` drops them."""

    def current(self, subject: str) -> DataKey:
        """The key to seal a new record of ``subject`` with (created on first use)."""
        ...

    def get(self, subject: str, version: int) -> DataKey:
        """Key ``version`` of ``subject``: ``ErasedRecordError`` if shredded, ``UnsealError`` if unknown."""
        ...

    def forget(self, subjects: Iterable[str]) -> None:
        """Drop any cached keys of these subjects (after they were shredded)."""
        ...


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


def is_sealed(data: bytes) -> bool:
    return len(data) > 1 and data[0] == SEAL_MAGIC


def seal(key: DataKey, event_id: str, plaintext: bytes) -> bytes:
    subject = key.subject.encode("ascii")
    if not 0 < len(subject) < 256:
        raise ValueError("a subject pseudonym must be 1 to 255 ASCII characters")
    header = _HEAD.pack(SEAL_MAGIC, FRAME_VERSION, key.version, uuid.UUID(event_id).bytes, len(subject)) + subject
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + key.aead.encrypt(nonce, plaintext, header)


def parse_frame(data: bytes) -> Frame:
    """Split a sealed value into its parts; ``UnsealError`` if it is not a well-formed frame."""
    if len(data) < _HEAD.size or data[0] != SEAL_MAGIC:
        raise UnsealError("not a sealed record (missing F5 header)")
    _magic, version, key_version, event_id, n = _HEAD.unpack_from(data)
    if version != FRAME_VERSION:
        raise UnsealError(f"sealed record frame version {version} is not supported")
    body = _HEAD.size + n
    if len(data) < body + NONCE_BYTES + TAG_BYTES:
        raise UnsealError("sealed record is truncated")
    try:
        subject = data[_HEAD.size:body].decode("ascii")
    except UnicodeDecodeError:
        raise UnsealError("sealed record names a malformed subject") from None
    return Frame(key_version, str(uuid.UUID(bytes=event_id)), subject, data[:body], data[body:body + NONCE_BYTES],
                 data[body + NONCE_BYTES:])


def open_frame(key: DataKey, frame: Frame) -> bytes:
    """The plaintext of a frame; ``UnsealError`` if it does not authenticate under ``key``."""
    try:
        return key.aead.decrypt(frame.nonce, frame.ciphertext, frame.header)
    except InvalidTag:
        raise UnsealError(f"sealed record of event {frame.event_id} failed authentication "
                          "(altered, moved to another subject, or sealed with another key)") from None


# ---- master keys ---------------------------------------------------------------------------------
def _derive(secret: str) -> bytes:
    text = secret.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    if len(text) < 32:
        raise ConfigError("a payload master key must be 64 hex characters (`openssl rand -hex 32`) "
                          "or at least 32 characters of secret text")
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=b"familyhub payload master key v1").derive(text.encode())


def kek_id(key: bytes) -> str:
    """A short public id of a master key (which key wrapped a data key), not usable to recover it."""
    return hashlib.sha256(b"familyhub-kek-id\x00" + key).hexdigest()[:16]


class MasterKeyring:
    """The current master key (wraps new data keys) and previous ones (unwrap only, until re-wrapped)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigError("no payload master key")
        if any(len(k) != KEY_BYTES for k in keys):
            raise ConfigError("payload master keys must be 32 bytes")
        self._keys = {kek_id(k): AESGCM(k) for k in keys}
        self.current_id = kek_id(keys[0])

    @classmethod
    def from_text(cls, text: str) -> MasterKeyring:
        """One key per line, current first; blank lines and ``#`` comments are ignored."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        return cls([_derive(ln) for ln in lines])

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    @staticmethod
    def _aad(subject: str, version: int) -> bytes:
        return _WRAP_AAD + subject.encode() + b"\x00" + version.to_bytes(4, "big")

    def wrap(self, subject: str, version: int, data_key: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        return self.current_id, nonce + self._keys[self.current_id].encrypt(nonce, data_key,
                                                                            self._aad(subject, version))

    def unwrap(self, key_id: str, subject: str, version: int, wrapped: bytes) -> bytes:
        aead = self._keys.get(key_id)
        if aead is None:
            raise ConfigError(f"data keys were wrapped with master key {key_id}, which this hub does not hold: "
                              "set HUB_PAYLOAD_MASTER_KEY_FILE to the right key (previous keys on later lines)")
        try:
            return aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], self._aad(subject, version))
        except InvalidTag:
            raise UnsealError(f"data key {version} of subject {subject} does not unwrap (altered row)") from None

    def __repr__(self) -> str:
        return f"MasterKeyring(current={self.current_id}, keys={len(self._keys)})"


def data_key(subject: str, version: int, raw: bytes) -> DataKey:
    return DataKey(subject, version, AESGCM(raw))


# ---- the serde decorator -------------------------------------------------------------------------
class SealingSerde:
    """A :class:`~hub.serde.Serde` that seals what the inner serde encodes and opens what it decodes.

    ``decode`` of a value that is not sealed (written before sealing existed, or produced to a topic
    by something other than the hub) is handed to the inner serde unchanged, so such bytes are
    decoded or dead-lettered exactly as before. A sealed value whose key was shredded raises
    :class:`~hub.errors.ErasedRecordError` (from the vault).
    """

    #: a sealed frame v1 (AES-256-GCM under the subject's data key) around the inner serde's Avro bytes
    content_type = SEALED_CONTENT_TYPE

    def __init__(self, inner: Serde, vault: KeyVault) -> None:
        self.inner = inner
        self.vault = vault

    def prefetch(self, subjects: Iterable[str]) -> None:
        """Have the vault load the current keys of many subjects at once (a batch about to be sealed), where it
        keeps them in a database (``prefetch_current``); otherwise nothing."""
        load = getattr(self.vault, "prefetch_current", None)
        if load is not None:
            load(subjects)

    def encode(self, record_type: str, record: dict[str, Any]) -> bytes:
        meta = record["meta"]
        return seal(self.vault.current(meta["subject"]), meta["event_id"], self.inner.encode(record_type, record))

    def encode_body(self, record_type: str, meta: dict[str, Any], body: bytes) -> bytes:
        return seal(self.vault.current(meta["subject"]), meta["event_id"], self.inner.encode_body(record_type, meta,
                                                                                                   body))

    def decode(self, data: bytes) -> Decoded:
        if not is_sealed(data):
            return self.inner.decode(data)
        frame = parse_frame(data)
        decoded = self.inner.decode(open_frame(self.vault.get(frame.subject, frame.key_version), frame))
        meta = decoded.record.get("meta") or {}
        if meta.get("subject") != frame.subject or meta.get("event_id") != frame.event_id:
            raise UnsealError(f"sealed record of event {frame.event_id} holds another subject's or event's record")
        return decoded
