"""Keyed-HMAC pseudonyms: the only form in which a person's agency identifier leaves the ingest edge.

``pseudonym(system, value)`` = ``"s-"`` + base32(HMAC-SHA256(key, system ":" normalised value))[:26].
The same identifier always gives the same pseudonym under one key, so events from one agency
system join; without the key the pseudonym cannot be reversed or recomputed from a guessed NHS
number. The key comes from ``HUB_PSEUDONYM_KEY``, ``HUB_PSEUDONYM_KEY_FILE`` or, on the embedded
default, a file created on first start in the data directory with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from hub.core.errors import ConfigError


class Pseudonymiser:
    """Computes pseudonyms, remembering the most recent ones (in memory only, never written anywhere).

    A batch usually names the same child many times; the cache holds at most ``cache_size``
    (system, identifier) → pseudonym pairs and is emptied when full.
    """

    def __init__(self, key: bytes, cache_size: int = 65536) -> None:
        if len(key) < 16:
            raise ConfigError("the pseudonym key must be at least 16 bytes")
        self._key = key
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._cache: dict[tuple[str, str], str] = {}
        self._cache_size = cache_size

    def __call__(self, system: str, value: str) -> str:
        cached = self._cache.get((system, value))
        if cached is not None:
            return cached
        msg = f"{system}:{value.strip().replace(' ', '').upper()}".encode()
        mac = self._mac.copy()
        mac.update(msg)
        pseudonym = "s-" + base64.b32encode(mac.digest()).decode().lower()[:26]
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[(system, value)] = pseudonym
        return pseudonym

    def digest(self, content: bytes) -> str:
        """A keyed digest of a record's content (40 hex characters), to tell a resend from a change."""
        mac = self._mac.copy()
        mac.update(b"content\x1f" + content)
        return mac.hexdigest()[:40]

    def __repr__(self) -> str:
        return "Pseudonymiser(<key>)"


def load_or_create_key(explicit: str, key_file: Path | None, data_dir: Path) -> bytes:
    if explicit:
        return explicit.encode()
    path = key_file or data_dir / "keys" / "pseudonym.key"
    if path.exists():
        return path.read_bytes().strip()
    if key_file is not None:
        raise ConfigError(f"pseudonym key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
