"""Agency webhooks: where each agency's shares go, how a body is signed, and one signed POST.

Deliveries are signed to the Standard Webhooks specification (standardwebhooks.com): headers
``webhook-id`` (the delivery id, the same on every attempt), ``webhook-timestamp`` (unix seconds
of this attempt) and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 over
``"{id}.{timestamp}.{body}"`` keyed with the secret), so a receiver can refuse a replayed body.
A webhook whose ``batch_max`` is more than 1 takes up to that many deliveries in one POST
(:mod:`hub.sharing.batched`); ``batch_max`` is refused (ConfigError) outside 1 to ``BATCH_MAX_LIMIT``.

See :mod:`hub.sharing.delivery` for what a webhook receives and how retries go.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from hub.core.errors import ConfigError
from hub.core.limits import ascii_digits
from hub.core.logging import get_logger
from hub.core.settings import sharing_settings
from hub.db.schema import agency_webhooks
from hub.db.store import Store

log = get_logger(__name__)
#: the most deliveries one POST may carry (an agency's ``batch_max`` is refused above it)
BATCH_MAX_LIMIT = 500


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str
    batch_max: int = 1  # how many deliveries one POST may carry: 1 sends each alone

    def __repr__(self) -> str:
        return f"Webhook(url={self.url!r}, secret=<redacted>, batch_max={self.batch_max})"


def checked_batch_max(value: object, where: str) -> int:
    """``value`` as a webhook's ``batch_max``; ConfigError unless it is a whole number from 1 to the limit."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= BATCH_MAX_LIMIT:
        raise ConfigError(f"{where}: batch_max must be a whole number from 1 to {BATCH_MAX_LIMIT} "
                          f"(1 sends each delivery alone), not {value!r}")
    return value


@lru_cache(maxsize=8)
def _read_file(path: str, mtime: float) -> Mapping[str, Webhook]:
    """The file's webhooks as of ``mtime`` (read again when the file changes)."""
    data = json.loads(Path(path).read_text())
    return {str(a): Webhook(str(v["url"]), str(v["secret"]),
                            checked_batch_max(v.get("batch_max", 1), f"HUB_WEBHOOKS_FILE, agency {a}"))
            for a, v in data.items()}


def _from_file(path: str) -> Mapping[str, Webhook]:
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        log.warning("sharing.webhooks_file_missing", path=path)
        return {}
    return _read_file(path, mtime)


def load_webhooks(store: Store) -> dict[str, Webhook]:
    """Agency id → webhook, from the ``agency_webhooks`` table and ``HUB_WEBHOOKS_FILE``."""
    w = agency_webhooks.c
    with store.engine.connect() as conn:
        hooks = {r.agency_id: Webhook(r.url, r.secret, r.batch_max) for r in conn.execute(
            sa.select(agency_webhooks).where(w.active.is_(True)))}
    path = sharing_settings().webhooks_file
    if path:
        hooks.update(_from_file(str(path)))
    return hooks


def set_webhook(store: Store, agency_id: str, url: str, secret: str, active: bool = True,
                batch_max: int = 1) -> None:
    """Set an agency's webhook; a ``whsec_`` secret that is not base64, or a ``batch_max`` outside 1 to
    ``BATCH_MAX_LIMIT``, is refused (ConfigError) and nothing is written."""
    secret_key(secret)
    checked_batch_max(batch_max, f"the webhook of agency {agency_id}")
    w = agency_webhooks.c
    values = dict(url=url, secret=secret, active=active, batch_max=batch_max)
    with store.engine.begin() as conn:
        if conn.execute(sa.select(w.agency_id).where(w.agency_id == agency_id)).first():
            conn.execute(agency_webhooks.update().where(w.agency_id == agency_id).values(values))
        else:
            conn.execute(agency_webhooks.insert().values(agency_id=agency_id, **values))


SECRET_PREFIX = "whsec_"
REPLAY_TOLERANCE_S = 300     # the Standard Webhooks receivers' default: five minutes either way


def secret_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret: ``whsec_<base64>`` as the Standard Webhooks specification
    writes it; a secret without the prefix (set before the hub followed the specification) is used
    as its UTF-8 bytes, which a receiver's library takes as ``Webhook(secret.encode())``."""
    if secret.startswith(SECRET_PREFIX):
        try:
            b64 = secret[len(SECRET_PREFIX):]
            return base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except binascii.Error as exc:
            raise ConfigError("a webhook secret starting whsec_ must be base64 after the prefix") from exc
    return secret.encode()


def new_secret() -> str:
    """A fresh secret in the specification's form: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (a new timestamp each attempt, same id)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, msg_id, ts, body)}


def verify(secret: str, body: bytes, headers: Mapping[str, str], now: float | None = None,
           tolerance: int = REPLAY_TOLERANCE_S) -> bool:
    """What a receiving agency does: the timestamp is recent and one ``v1`` signature matches
    (constant-time). A replay of an old delivery fails on its timestamp."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
    if not msg_id or not ascii_digits(ts):
        return False
    if abs((time.time() if now is None else now) - int(ts)) > tolerance:
        return False
    expected = sign(secret, msg_id, int(ts), body)
    return any(hmac.compare_digest(expected, sig) for sig in lower.get("webhook-signature", "").split())


def body_of(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a delivery's POST carries: its payload and ``sent_at``."""
    body: dict[str, Any] = json.loads(row["payload"])
    body["sent_at"] = now.isoformat()
    return body


async def post(client: httpx.AsyncClient, hook: Webhook, msg_id: str, kind: str, body: dict[str, Any],
               now: datetime, receipt: Mapping[str, Any] | None = None) -> tuple[bool, str]:
    """One signed POST of ``body`` as message ``msg_id``: (True, the receipt) on a 2xx, else (False, why)."""
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    try:
        signature = signed_headers(hook.secret, msg_id, raw)
    except ConfigError as exc:  # a malformed secret: this agency's deliveries fail and are retried, no others
        return False, str(exc)
    headers = {"Content-Type": "application/json", "Idempotency-Key": msg_id, "X-Hub-Delivery-Kind": kind,
               **signature}
    try:
        resp = await client.post(hook.url, content=raw, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= resp.status_code < 300:
        return True, json.dumps({"status": resp.status_code, "at": now.isoformat(), "body": resp.text[:500],
                                 **(receipt or {})})
    return False, f"HTTP {resp.status_code}: {resp.text[:300]}"


async def send(client: httpx.AsyncClient, hook: Webhook, row: dict[str, Any],
               now: datetime) -> tuple[bool, str]:
    """One delivery alone: its id is the message id (``webhook-id``, ``Idempotency-Key``)."""
    return await post(client, hook, row["delivery_id"], row["kind"], body_of(row, now), now)
