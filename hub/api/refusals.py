"""Refused requests: security logs and a counter, not the IG audit trail.

The audit trail records who did what to whose record. A request with no token or a bad one names no
one, so it goes to a counter (``hub_requests_refused_total{reason=...}`` on ``/metrics``) and a
structlog warning, at most ``per_minute`` warnings per source address per minute (the rest are only
counted), so a flood neither fills the trail nor the logs. A request by an authenticated principal
that the policy refuses is also audited (``login_denied``), with the route template and only the
path's household and child ids that exist in the hub (:func:`known_ids`): never the path as sent.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from starlette.requests import Request

from hub.core.errors import AuthError, HubError, NotFoundError
from hub.core.logging import get_logger
from hub.core.privacy import scrub_text
from hub.db.schema import household_members, households, identity_links
from hub.db.store import Store
from hub.governance.auth import Principal

log = get_logger(__name__)
MAX_SOURCES = 10000
PURPOSE = re.compile(r"[a-z][a-z_-]{0,39}")


def refusal_reason(exc: HubError, principal: Principal | None, header: str) -> str:
    """The counter label of a refusal: unauthenticated, invalid_token, forbidden or not_found."""
    if isinstance(exc, AuthError):
        return "invalid_token" if header.strip() else "unauthenticated"
    return "not_found" if isinstance(exc, NotFoundError) else "forbidden"


def purpose_of(request: Request, principal: Principal) -> str | None:
    """The purpose an audit record gives: a code from the ``X-Purpose`` header, never free text."""
    stated = request.headers.get("x-purpose", "").strip().lower()
    if stated:
        return stated if PURPOSE.fullmatch(stated) else "unspecified"
    return "investigation" if principal.reason else None


class RefusalLog:
    """Rate-limited warnings about refused requests, per source address."""

    def __init__(self, per_minute: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def allow(self, source: str) -> bool:
        """Whether a warning about ``source`` may be logged now."""
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(source, (now, 0))
            if now - start >= 60:
                start, count = now, 0
            if len(self._windows) >= MAX_SOURCES and source not in self._windows:
                self._windows.clear()
            self._windows[source] = (start, count + 1)
            return count < self.per_minute

    def warn(self, reason: str, source: str, method: str, template: str) -> None:
        if self.allow(source):
            log.warning("api.request_refused", reason=reason, source=scrub_text(source), method=method,
                        route=template)


def known_ids(store: Store, household_id: str | None, child_id: str | None) -> tuple[str | None, str | None]:
    """The household and child ids of a path that exist in the hub; None for anything else."""
    L = identity_links.c
    with store.engine.connect() as conn:
        def exists(*queries: sa.Select[tuple[str]]) -> bool:
            return any(conn.execute(q.limit(1)).first() is not None for q in queries)

        hh = household_id if household_id is not None and exists(
            sa.select(households.c.household_id).where(households.c.household_id == household_id),
            sa.select(L.household_id).where(L.household_id == household_id)) else None
        child = child_id if child_id is not None and exists(
            sa.select(household_members.c.member_id).where(household_members.c.member_id == child_id),
            sa.select(L.child_id).where(L.child_id == child_id)) else None
    return hh, child
