"""Agency webhooks: where each agency's shares go, how a body is signed, and one signed POST.

See :mod:`hub.sharing.delivery` for what a webhook receives and how retries go.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from hub.core.logging import get_logger
from hub.core.settings import sharing_settings
from hub.db.schema import agency_webhooks
from hub.db.store import Store

log = get_logger(__name__)


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str

    def __repr__(self) -> str:
        return f"Webhook(url={self.url!r}, secret=<redacted>)"


@lru_cache(maxsize=8)
def _read_file(path: str, mtime: float) -> Mapping[str, Webhook]:
    """The file's webhooks as of ``mtime`` (read again when the file changes)."""
    data = json.loads(Path(path).read_text())
    return {str(a): Webhook(str(v["url"]), str(v["secret"])) for a, v in data.items()}


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
        hooks = {r.agency_id: Webhook(r.url, r.secret) for r in conn.execute(
            sa.select(agency_webhooks).where(w.active.is_(True)))}
    path = sharing_settings().webhooks_file
    if path:
        hooks.update(_from_file(str(path)))
    return hooks


def set_webhook(store: Store, agency_id: str, url: str, secret: str, active: bool = True) -> None:
    w = agency_webhooks.c
    with store.engine.begin() as conn:
        if conn.execute(sa.select(w.agency_id).where(w.agency_id == agency_id)).first():
            conn.execute(agency_webhooks.update().where(w.agency_id == agency_id).values(
                url=url, secret=secret, active=active))
        else:
            conn.execute(agency_webhooks.insert().values(agency_id=agency_id, url=url, secret=secret, active=active))


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiving agency does: constant-time comparison of the signature header."""
    return hmac.compare_digest(sign(secret, body), header)



async def send(client: httpx.AsyncClient, hook: Webhook, row: dict[str, Any],
                now: datetime) -> tuple[bool, str]:
    body = json.loads(row["payload"])
    body["sent_at"] = now.isoformat()
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(hook.secret, raw),
               "X-Hub-Timestamp": str(int(time.time())), "Idempotency-Key": row["delivery_id"],
               "X-Hub-Delivery-Kind": row["kind"]}
    try:
        resp = await client.post(hook.url, content=raw, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= resp.status_code < 300:
        return True, json.dumps({"status": resp.status_code, "at": now.isoformat(), "body": resp.text[:500]})
    return False, f"HTTP {resp.status_code}: {resp.text[:300]}"
