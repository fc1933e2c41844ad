"""The pages' session: who is signed in, their CSRF token and language, in a signed cookie.

The cookie is signed (itsdangerous, through Starlette's session middleware) with a key of its own
(``HUB_SESSION_KEY[_FILE]``, else generated in ``<data dir>/keys/session.key``), HttpOnly, SameSite=Lax
and Secure unless ``HUB_SESSION_SECURE_COOKIE=false``. Every form carries the session's CSRF token and a
POST without it is refused (403) before anything is done.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from typing import Any

from starlette.requests import Request

from hub.core.errors import AuthError, ConfigError, FormExpiredError
from hub.core.settings import Settings
from hub.governance.auth import ROLES, Principal

COOKIE = "hub_session"
LANGUAGES = ("en", "cy")


def session_key(settings: Settings) -> str:
    if settings.session_key.get_secret_value():
        return settings.session_key.get_secret_value()
    path = settings.session_key_file or settings.data_dir / "keys" / "session.key"
    if path.exists():
        return path.read_text().strip()
    if settings.session_key_file is not None:
        raise ConfigError(f"session key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the stack made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def sign_in(request: Request, principal: Principal, hours: float) -> None:
    """Start a fresh session for ``principal`` (a new CSRF token; the language is kept)."""
    lang = request.session.get("lang")
    request.session.clear()
    request.session.update({
        "who": {"sub": principal.subject, "role": principal.role, "agency": principal.agency,
                "household": principal.household, "member": principal.member},
        "until": time.time() + hours * 3600, "csrf": secrets.token_urlsafe(24),
        **({"lang": lang} if lang else {})})


def sign_out(request: Request) -> None:
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang


def signed_in(request: Request) -> Principal | None:
    """The person signed in, or None (no session, or it has run out)."""
    who: dict[str, Any] | None = request.session.get("who")
    if not who or float(request.session.get("until", 0)) < time.time() or who.get("role") not in ROLES:
        return None
    return Principal(str(who["sub"]), str(who["role"]), who.get("agency"), who.get("household"), who.get("member"))


def require(request: Request) -> Principal:
    principal = signed_in(request)
    if principal is None:
        raise AuthError("sign in to see this page")
    return principal


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a form that does not carry this session's token (a request forged by another site)."""
    expected = request.session.get("csrf")
    if not expected or not submitted or not hmac.compare_digest(str(expected), submitted):
        raise FormExpiredError("the form has expired or did not come from this site: go back, reload and try again")


def language(request: Request) -> str:
    """The reader's language: ``?lang=cy`` (the switch on every page) sets it for the session."""
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        request.session["lang"] = chosen
    lang = request.session.get("lang")
    return lang if lang in LANGUAGES else "en"
