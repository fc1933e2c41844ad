"""Signing in to the pages with OpenID Connect (authorisation code with PKCE) against the issuer the API trusts:
the access token is verified as the API verifies a bearer token and its claims become the session's person."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.pages import signin
from tests.oidc_provider import AUDIENCE, ISSUER, IdentityProvider, rsa_key
from tests.pages.conftest import browser, csrf_of, running_services
from tests.pages.oidc_login import CLIENT, LoginProvider

CALLBACK = "https://hub.test/sign-in/oidc/callback"


@pytest.fixture
def provider() -> Iterator[LoginProvider]:
    key = rsa_key("k1")
    with LoginProvider(IdentityProvider(key), key).serving() as p:
        yield p


@pytest.fixture
async def oidc_services(sqlite_url: str, broker: EmbeddedBroker, tmp_path: Path,
                        provider: LoginProvider) -> AsyncIterator[Services]:
    async with running_services(sqlite_url, broker, tmp_path, oidc_issuer=ISSUER, oidc_audience=AUDIENCE,
                                oidc_jwks_url=f"{provider.base}/jwks", oidc_client_id=CLIENT,
                                oidc_authorize_url=f"{provider.base}/authorize",
                                oidc_token_url=f"{provider.base}/token", oidc_redirect_url=CALLBACK) as svc:
        yield svc


def through_provider(start: httpx.Response) -> str:
    """Follow the hub's redirect to the provider; the path and query it sends the browser back to."""
    assert start.status_code == 303
    asked = parse_qs(urlparse(start.headers["location"]).query)
    assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) == 43
    back = httpx.get(start.headers["location"], follow_redirects=False)
    assert back.status_code == 302 and back.headers["location"].startswith(CALLBACK)
    return back.headers["location"].removeprefix("https://hub.test")


async def test_a_coordinator_signs_in_with_the_identity_provider(oidc_services: Services,
                                                                  provider: LoginProvider) -> None:
    async with browser(oidc_services) as client:
        assert "/sign-in/oidc" in (await client.get("/")).text
        back = through_provider(await client.get("/sign-in/oidc"))
        r = await client.get(back)
        assert r.status_code == 303 and r.headers["location"] == "/caseload"
        assert (await client.get("/caseload")).status_code == 200
        again = await client.get(back)  # the answer cannot be replayed: the flow was used up
        assert again.status_code == 401


async def test_a_parent_from_the_provider_gets_their_own_household(oidc_services: Services,
                                                                   provider: LoginProvider) -> None:
    provider.claims = {"sub": "parent-77", "role": "parent", "household": "hh-77"}
    async with browser(oidc_services) as client:
        r = await client.get(through_provider(await client.get("/sign-in/oidc")))
        assert r.headers["location"] == "/family"
        assert (await client.get("/caseload")).status_code == 403
        assert (await client.get("/households/hh-77")).status_code == 403


async def test_a_forged_state_a_stolen_answer_or_an_unknown_role_signs_nobody_in(
        oidc_services: Services, provider: LoginProvider) -> None:
    async with browser(oidc_services) as client:
        back = through_provider(await client.get("/sign-in/oidc"))
        forged = back.replace("state=", "state=x")
        assert (await client.get(forged)).status_code == 401
        assert (await client.get("/caseload")).status_code == 401
    async with browser(oidc_services) as client:  # another browser's answer: no flow started here
        back = through_provider(await client.get("/sign-in/oidc"))
    async with browser(oidc_services) as thief:
        r = await thief.get(back)
        assert r.status_code == 401 and (await thief.get("/caseload")).status_code == 401
    provider.claims = {"sub": "user-1", "role": "superuser"}
    async with browser(oidc_services) as client:
        r = await client.get(through_provider(await client.get("/sign-in/oidc")))
        assert r.status_code == 401 and "role" in r.text
        assert (await client.get("/caseload")).status_code == 401


async def test_with_an_identity_provider_one_time_links_sign_nobody_in(oidc_services: Services) -> None:
    token = signin.issue(oidc_services.store, Principal("cc-1", "coordinator"), 15)
    async with browser(oidc_services) as client:
        page = await client.get(f"/sign-in/{token}")
        r = await client.post(f"/sign-in/{token}", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 401 and (await client.get("/caseload")).status_code == 401


async def test_without_an_identity_provider_the_oidc_route_refuses(site_services: Services) -> None:
    async with browser(site_services) as client:
        assert (await client.get("/sign-in/oidc")).status_code == 403
