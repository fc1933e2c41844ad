"""One-time sign-in links: a short-lived secret in a URL, stored only as its SHA-256, usable once.

``hub demo --serve`` prints one for each of the demo's people (coordinator, parent, young person, agency,
IG officer); following it signs the browser in as that person (a session cookie, :mod:`hub.pages.session`).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa

from hub.core.errors import AuthError, SignInLinkUsedError
from hub.db.schema import page_signins
from hub.db.store import Store, utcnow
from hub.governance.auth import ROLES, Principal

S = page_signins.c


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(store: Store, principal: Principal, minutes: float) -> str:
    """A new one-time link secret for ``principal``, valid ``minutes``."""
    if principal.role not in ROLES:
        raise AuthError("no such role")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(page_signins.insert().values(
            token_hash=_digest(token), user_id=principal.subject, role=principal.role, agency=principal.agency,
            household_id=principal.household, member_id=principal.member, created_at=now,
            expires_at=now + timedelta(minutes=minutes)))
    return token


def redeem(store: Store, token: str) -> Principal:
    """The person a link signs in, once: a used, expired or unknown link is refused (401)."""
    now = utcnow()
    digest = _digest(token)
    with store.engine.begin() as conn:
        done = conn.execute(page_signins.update().where(
            S.token_hash == digest, S.used_at.is_(None), S.expires_at > now).values(used_at=now)).rowcount
        row = conn.execute(sa.select(page_signins).where(S.token_hash == digest)).first() if done else None
    if row is None:
        raise SignInLinkUsedError("this sign-in link has expired or has been used: ask for a new one")
    return Principal(row.user_id, row.role, row.agency, row.household_id, row.member_id)


def peek(store: Store, token: str) -> bool:
    """Whether a link can still be used (the page before the sign-in button says so)."""
    with store.engine.connect() as conn:
        return conn.execute(sa.select(S.token_hash).where(
            S.token_hash == _digest(token), S.used_at.is_(None), S.expires_at > utcnow())).first() is not None
