"""The real app configured for an OIDC issuer whose JWKS is served on 127.0.0.1.

Tokens from the issuer reach the guard with their role and relationship claims (a coordinator's
caseload, an agency's inbox); every refusal is a 401 problem document that never echoes the token,
and the hub's own tokens are refused while OIDC is configured.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hub.api.app import create_app
from hub.core.settings import Settings
from hub.governance.auth import TokenService
from hub.ingest.services import Services
from tests.api.conftest import _services
from tests.oidc_provider import AUDIENCE, ISSUER, IdentityProvider, rsa_key, unsigned

pytestmark = pytest.mark.broker
KEY = rsa_key("rsa-routes")


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider(KEY).serving() as provider:
        yield provider


@pytest.fixture
async def oidc_services(sqlite_url: str, tmp_path: Path, idp: IdentityProvider) -> AsyncIterator[Services]:
    broker, svc = await _services(sqlite_url, tmp_path, oidc_issuer=ISSUER, oidc_audience=AUDIENCE,
                                  oidc_jwks_url=idp.jwks_url, jwt_key="hub-own-key-0123456789abcdef0123456789")
    yield svc
    await svc.stop()
    svc.store.engine.dispose()
    broker.stop()


@pytest.fixture
async def api(oidc_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(oidc_services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_issuer_tokens_reach_the_policy_with_their_claims(api: httpx.AsyncClient,
                                                                idp: IdentityProvider) -> None:
    assert (await api.get("/healthz")).status_code == 200
    cc = bearer(idp.token(KEY, sub="cc-oidc-1", role="coordinator"))
    r = await api.get("/v1/coordinators/cc-oidc-1/caseload", headers=cc)
    assert r.status_code == 200, r.text
    assert (await api.get("/v1/coordinators/cc-someone-else/caseload", headers=cc)).status_code == 404

    agency = bearer(idp.token(KEY, sub="slt-user-1", role="agency", agency="7A6"))
    r = await api.get("/v1/agencies/7A6/inbox", headers=agency)
    assert r.status_code == 200 and r.json()["items"] == []
    assert (await api.get("/v1/agencies/S1/inbox", headers=agency)).status_code == 404
    assert (await api.get("/v1/coordinators/slt-user-1/caseload", headers=agency)).status_code == 403


@pytest.mark.parametrize("how", ["wrong-issuer", "wrong-audience", "expired", "not-yet-valid", "unknown-key",
                                 "alg-none", "hub-own", "garbage"])
async def test_refusals_are_401_problems_that_do_not_echo_the_token(api: httpx.AsyncClient,
                                                                    idp: IdentityProvider,
                                                                    oidc_services: Services, how: str) -> None:
    now = int(time.time())
    own = Settings(data_dir=oidc_services.settings.data_dir / "own", jwt_key="hub-own-key-0123456789abcdef0123456789")
    token = {
        "wrong-issuer": lambda: idp.token(KEY, sub="cc-1", iss="https://elsewhere.test/"),
        "wrong-audience": lambda: idp.token(KEY, sub="cc-1", aud="other-api"),
        "expired": lambda: idp.token(KEY, sub="cc-1", iat=now - 7200, exp=now - 3600),
        "not-yet-valid": lambda: idp.token(KEY, sub="cc-1", nbf=now + 3600),
        "unknown-key": lambda: idp.token(rsa_key("rsa-stranger"), sub="cc-1"),
        "alg-none": lambda: unsigned(idp.claims(sub="cc-1"), KEY.kid),
        "hub-own": lambda: TokenService(own).create("cc-1", "coordinator"),
        "garbage": lambda: "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
    }[how]()
    r = await api.get("/v1/coordinators/cc-1/caseload", headers=bearer(token))
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    body = r.json()
    assert body["status"] == 401 and body["detail"]
    for part in token.split("."):
        assert not part or part not in r.text
