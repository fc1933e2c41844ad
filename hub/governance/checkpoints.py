"""Signed checkpoints of the audit chain, kept where the database's writer cannot rewrite them.

A checkpoint is a statement about the chain's head — its last ``seq``, that record's ``hash``, how many
``records`` the log held and when it was ``signed_at`` — signed with Ed25519 by a key held apart from
the database and from the payload master key (``HUB_AUDIT_SIGNING_KEY_FILE``; on the embedded default
``<data dir>/keys/audit-signing.key``, created with mode 0600). The signed bytes are the statement's
canonical JSON (sorted keys, no whitespace, UTF-8)::

    {"hash": …, "key_id": …, "records": …, "seq": …, "signed_at": "…Z", "type": "hub.audit.checkpoint", "v": 1}

``key_id`` is the first 16 hex digits of SHA-256 over the raw public key; :func:`public_key_pem` is what
``hub audit public-key`` prints for verifiers to hold. A checkpoint is published as one JSON line
``{"checkpoint": {…}, "signature": "<base64>", "timestamp": {"tsa": url, "token": "<base64 DER>"}}``
(``timestamp`` only where ``HUB_AUDIT_TSA_URL`` is set) to the append-only checkpoint file and the
``hub.audit.checkpoints`` topic (:mod:`hub.governance.checkpoint_sinks`), and noted in the database's
``audit_checkpoints`` table. Verification against them is :mod:`hub.governance.checkpoint_verify`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.core.errors import ConfigError
from hub.core.settings import Settings

TYPE = "hub.audit.checkpoint"
VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement about the chain's head."""

    seq: int
    hash: str
    records: int
    signed_at: datetime
    key_id: str
    signature: str = ""  # base64
    timestamp: dict[str, str] | None = field(default=None, compare=False)

    def statement(self) -> dict[str, Any]:
        return {"type": TYPE, "v": VERSION, "seq": self.seq, "hash": self.hash, "records": self.records,
                "signed_at": self.signed_at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "key_id": self.key_id}

    def signed_bytes(self) -> bytes:
        return json.dumps(self.statement(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        """SHA-256 of the signed bytes: the checkpoint's identity (also what a timestamp authority stamps)."""
        return hashlib.sha256(self.signed_bytes()).hexdigest()

    def line(self) -> str:
        doc: dict[str, Any] = {"checkpoint": self.statement(), "signature": self.signature}
        if self.timestamp:
            doc["timestamp"] = self.timestamp
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))


class BadCheckpoint(ValueError):
    """A published checkpoint that cannot be trusted: unreadable, unknown key or a bad signature."""

    def __init__(self, message: str, seq: int = 0) -> None:
        super().__init__(message)
        self.seq = seq


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def signing_key_path(settings: Settings) -> Path:
    return settings.audit_signing_key_file or settings.data_dir / "keys" / "audit-signing.key"


def checkpoint_file(settings: Settings) -> Path:
    return settings.audit_checkpoint_file or settings.data_dir / "audit" / "checkpoints.jsonl"


def _read_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"audit signing key file {path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"audit signing key file {path} does not hold an Ed25519 key")
    return key


def load_or_create_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The checkpoint signing key; on the embedded default, generated on first use (mode 0600)."""
    path = signing_key_path(settings)
    if path.exists():
        return _read_private(path)
    if settings.audit_signing_key_file is not None:
        raise ConfigError(f"audit signing key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # written in full under a private name, then linked into place: a process starting at the same
    # moment either creates the key or reads the whole of the other's
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_private(path)


def parse_public_keys(text: str) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 public key in PEM text (several may be concatenated), by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    marker = "-----BEGIN PUBLIC KEY-----"
    for block in text.split(marker)[1:]:
        try:
            key = serialization.load_pem_public_key((marker + block).encode())
        except ValueError as exc:
            raise ConfigError("audit public keys: a PEM block is not a public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError("audit public keys: only Ed25519 keys sign checkpoints")
        keys[key_id(key)] = key
    return keys


def verifying_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """The public keys checkpoints are checked with: HUB_AUDIT_PUBLIC_KEYS_FILE, else the signing key's own
    (never created here: without either, no checkpoint can be trusted)."""
    if settings.audit_public_keys_file is not None:
        try:
            return parse_public_keys(settings.audit_public_keys_file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read HUB_AUDIT_PUBLIC_KEYS_FILE {settings.audit_public_keys_file}: "
                              f"{exc.strerror}") from exc
    path = signing_key_path(settings)
    if not path.exists():
        return {}
    public = _read_private(path).public_key()
    return {key_id(public): public}


def sign(key: Ed25519PrivateKey, *, seq: int, hash: str, records: int, signed_at: datetime) -> Checkpoint:
    unsigned = Checkpoint(seq, hash, records, signed_at, key_id(key.public_key()))
    signature = base64.b64encode(key.sign(unsigned.signed_bytes())).decode()
    return Checkpoint(seq, hash, records, signed_at, unsigned.key_id, signature)


def parse_line(line: str, keys: dict[str, Ed25519PublicKey]) -> Checkpoint:
    """A published checkpoint whose signature checks out with one of ``keys``; else :class:`BadCheckpoint`."""
    try:
        doc = json.loads(line)
        st = doc["checkpoint"]
        if st.get("type") != TYPE or st.get("v") != VERSION:
            raise ValueError("not a checkpoint statement")
        cp = Checkpoint(int(st["seq"]), str(st["hash"]), int(st["records"]),
                        datetime.fromisoformat(str(st["signed_at"]).replace("Z", "+00:00")),
                        str(st["key_id"]), str(doc["signature"]), doc.get("timestamp"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BadCheckpoint("unreadable checkpoint (not a signed checkpoint statement)") from None
    public = keys.get(cp.key_id)
    if public is None:
        raise BadCheckpoint(f"checkpoint signed by unknown key {cp.key_id} (not among the verifying public keys)",
                            cp.seq)
    try:
        public.verify(base64.b64decode(cp.signature, validate=True), cp.signed_bytes())
    except (InvalidSignature, ValueError):
        raise BadCheckpoint(f"checkpoint signature does not verify with key {cp.key_id} (forged or edited)",
                            cp.seq) from None
    return cp


def parse_lines(lines: Iterable[str],
                keys: dict[str, Ed25519PublicKey]) -> tuple[list[Checkpoint], list[BadCheckpoint]]:
    good: list[Checkpoint] = []
    bad: list[BadCheckpoint] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            good.append(parse_line(line, keys))
        except BadCheckpoint as exc:
            bad.append(exc)
    return good, bad
