"""Signing in to the pages in production: OpenID Connect, authorisation code with PKCE, against the issuer the
API already trusts (``HUB_OIDC_ISSUER``; ``HUB_OIDC_CLIENT_ID``, ``_AUTHORIZE_URL``, ``_TOKEN_URL``,
``_REDIRECT_URL``). The access token the issuer returns is verified exactly as the API verifies a bearer token
(:meth:`hub.governance.auth.TokenService.verify`: signature from the JWKS, issuer, audience, expiry), and its
claims (``sub``, ``role``, ``agency``, ``household``, ``member``) become the session's person; the ID token
must carry this sign-in's nonce. State, nonce and the PKCE verifier live in the signed session cookie."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from hub.core.errors import AuthError, LinksOnlyError, ProviderRefusedError, SignInNotStartedError
from hub.core.logging import get_logger
from hub.core.settings import Settings
from hub.governance.auth import TokenService
from hub.pages.session import sign_in

log = get_logger(__name__)
FLOW = "oidc_flow"


def configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id and settings.oidc_authorize_url
                and settings.oidc_token_url and settings.oidc_redirect_url)


def challenge(verifier: str) -> str:
    """The PKCE S256 code challenge of a verifier (RFC 7636)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def oidc_pages(settings: Settings, home: dict[str, str]) -> APIRouter:
    router = APIRouter(tags=["pages"], include_in_schema=False)
    tokens = TokenService(settings) if configured(settings) else None

    @router.get("/sign-in/oidc")
    async def start(request: Request) -> Response:
        """Send the browser to the identity provider with a fresh state, nonce and PKCE challenge."""
        if tokens is None:
            raise LinksOnlyError("this hub signs people in with one-time links, not an identity provider")
        flow = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
                "verifier": secrets.token_urlsafe(48)}
        request.session[FLOW] = flow
        query = urlencode({"response_type": "code", "client_id": settings.oidc_client_id,
                           "redirect_uri": settings.oidc_redirect_url, "scope": "openid",
                           "state": flow["state"], "nonce": flow["nonce"],
                           "code_challenge": challenge(flow["verifier"]), "code_challenge_method": "S256"})
        return RedirectResponse(f"{settings.oidc_authorize_url}?{query}", status_code=303)

    @router.get("/sign-in/oidc/callback")
    async def callback(request: Request, code: str = "", state: str = "") -> Response:
        """Exchange the code (with the PKCE verifier), verify what comes back, start the session."""
        flow = request.session.pop(FLOW, None)
        if tokens is None or not flow or not code or not secrets.compare_digest(str(flow["state"]), state):
            raise SignInNotStartedError("this sign-in did not start here or has already been used: sign in again")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": settings.oidc_redirect_url,
                "client_id": settings.oidc_client_id, "code_verifier": flow["verifier"]}
        if settings.oidc_client_secret.get_secret_value():
            form["client_secret"] = settings.oidc_client_secret.get_secret_value()
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(settings.oidc_token_url, data=form)
            body = answer.json() if answer.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("pages.oidc_token_unreachable", error=type(exc).__name__)
            body = {}
        if "access_token" not in body or "id_token" not in body:
            raise ProviderRefusedError("the identity provider did not sign you in: try again")
        try:
            await asyncio.to_thread(tokens.verify_id_token, str(body["id_token"]), settings.oidc_client_id,
                                    str(flow["nonce"]))
            principal = await asyncio.to_thread(tokens.verify, str(body["access_token"]))
        except AuthError as exc:
            raise ProviderRefusedError(f"the identity provider's answer was refused: {exc}") from None
        sign_in(request, principal, settings.session_hours)
        return RedirectResponse(home.get(principal.role, "/"), status_code=303)

    return router
