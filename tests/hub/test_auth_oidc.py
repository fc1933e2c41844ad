"""The OIDC path of the token service against a real JWKS endpoint on 127.0.0.1.

The identity provider is the edge of the world, so a local HTTP server publishing real RSA and EC
keys stands in for it: signature, issuer, audience, expiry / not-before with the configured clock
skew, key rotation and withdrawal, ``alg: none``, the HS256-with-the-public-key confusion, and the
hub's own tokens (refused while OIDC is configured).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from hub.core.errors import AuthError, ConfigError
from hub.core.settings import Settings
from hub.governance.auth import Principal, TokenService
from hub.kafka.broker import free_port
from tests.oidc_provider import (
    AUDIENCE,
    ISSUER,
    IdentityProvider,
    ec_key,
    hmac_with_public_key,
    rsa_key,
    unsigned,
)

LEEWAY = 30
HUB_KEY = "hub-own-key-0123456789abcdef0123456789"
FIRST = rsa_key("rsa-2026-01")


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider(FIRST, ec_key("ec-2026-01")).serving() as provider:
        yield provider


def oidc_settings(tmp_path: Path, jwks_url: str, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", jwt_key=HUB_KEY, jwt_leeway=LEEWAY, oidc_issuer=ISSUER,
                    oidc_audience=AUDIENCE, oidc_jwks_url=jwks_url, **overrides)


@pytest.fixture
def tokens(tmp_path: Path, idp: IdentityProvider) -> TokenService:
    return TokenService(oidc_settings(tmp_path, idp.jwks_url))


def refused(tokens: TokenService, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        tokens.verify(token)
    message = str(caught.value)
    assert token not in message and token.split(".")[0] not in message
    return message


def test_a_valid_token_maps_subject_role_and_relationship_claims(tokens: TokenService,
                                                                 idp: IdentityProvider) -> None:
    agency = tokens.verify(idp.token(FIRST, sub="slt-user-9", role="agency", agency="7A6"))
    assert agency == Principal("slt-user-9", "agency", agency="7A6")
    parent = tokens.verify(idp.token(idp.keys["ec-2026-01"], sub="p-1", role="parent", household="hh-1",
                                     member="m-2"))
    assert parent == Principal("p-1", "parent", household="hh-1", member="m-2")
    # a relationship claim that is not a plain string never matches a path parameter
    odd = tokens.verify(idp.token(FIRST, role="agency", agency=["7A6", "S1"]))
    assert odd.agency is None


@pytest.mark.parametrize(("claims", "expected"), [
    ({"iss": "https://evil.test/"}, "issuer"),
    ({"aud": "another-api"}, "audience"),
    ({"aud": None}, "claim"),
    ({"iss": None}, "claim"),
    ({"exp": None}, "claim"),
    ({"role": None}, "role"),
    ({"role": "superuser"}, "role"),
])
def test_tokens_not_for_this_hub_are_refused(tokens: TokenService, idp: IdentityProvider,
                                             claims: dict[str, Any], expected: str) -> None:
    assert expected in refused(tokens, idp.token(FIRST, **claims))


def test_clock_skew_is_allowed_up_to_the_configured_leeway(tokens: TokenService, idp: IdentityProvider) -> None:
    now = int(time.time())
    margin = 10  # well clear of the leeway edge so a slow test machine cannot flip the answer
    assert tokens.verify(idp.token(FIRST, iat=now - 3600, exp=now - LEEWAY + margin)).subject == "user-4711"
    assert tokens.verify(idp.token(FIRST, nbf=now + LEEWAY - margin, iat=now + LEEWAY - margin))
    assert "expired" in refused(tokens, idp.token(FIRST, iat=now - 3600, exp=now - LEEWAY - margin))
    assert "not valid yet" in refused(tokens, idp.token(FIRST, nbf=now + LEEWAY + margin))
    assert "not valid yet" in refused(tokens, idp.token(FIRST, iat=now + LEEWAY + margin))


def test_a_key_the_provider_does_not_publish_is_refused(tokens: TokenService, idp: IdentityProvider) -> None:
    impostor_same_kid = rsa_key(FIRST.kid)
    assert "signature" in refused(tokens, idp.token(impostor_same_kid))
    message = refused(tokens, idp.token(rsa_key("attacker-kid-31337")))
    assert "not signed by a key the identity provider publishes" in message
    assert "attacker-kid-31337" not in message


def test_alg_none_and_hmac_keyed_with_the_public_key_are_refused(tokens: TokenService,
                                                                 idp: IdentityProvider) -> None:
    claims = idp.claims()
    assert "algorithm" in refused(tokens, unsigned(claims, FIRST.kid))
    assert "algorithm" in refused(tokens, hmac_with_public_key(claims, FIRST))
    # the algorithm the published key names is bound: the same RSA key signing PS256 is refused
    pss = jwt.encode(claims, FIRST.private, algorithm="PS256", headers={"kid": FIRST.kid})  # type: ignore[arg-type]
    assert "algorithm" in refused(tokens, pss)


def test_the_hubs_own_tokens_are_refused_while_oidc_is_configured(tmp_path: Path, tokens: TokenService) -> None:
    own = TokenService(Settings(data_dir=tmp_path / "own", jwt_key=HUB_KEY)).create("cc-1", "coordinator")
    assert TokenService(Settings(data_dir=tmp_path / "own", jwt_key=HUB_KEY)).verify(own).subject == "cc-1"
    refused(tokens, own)
    with pytest.raises(ConfigError, match="OIDC issuer only"):
        tokens.create("cc-1", "coordinator")


def test_key_rotation_is_picked_up_and_a_withdrawn_key_stops_verifying(tmp_path: Path,
                                                                       idp: IdentityProvider) -> None:
    tokens = TokenService(oidc_settings(tmp_path, idp.jwks_url, oidc_jwks_lifespan=1.0, oidc_jwks_cooldown=0))
    assert tokens.verify(idp.token(FIRST)).subject == "user-4711"
    fetched = idp.fetches
    rotated = rsa_key("rsa-2026-07")
    idp.publish(rotated)
    assert tokens.verify(idp.token(rotated, sub="after-rotation")).subject == "after-rotation"
    assert idp.fetches == fetched + 1  # the unknown key id made the hub refetch the key set once
    assert tokens.verify(idp.token(rotated)).role == "coordinator"
    assert idp.fetches == fetched + 1  # then served from the cache

    idp.withdraw(FIRST.kid)
    old = idp.token(FIRST)
    time.sleep(1.2)  # the cached key set ages out
    refused(tokens, old)
    assert tokens.verify(idp.token(rotated)).role == "coordinator"


def test_unknown_key_ids_refetch_at_most_once_per_cooldown(tmp_path: Path, idp: IdentityProvider) -> None:
    tokens = TokenService(oidc_settings(tmp_path, idp.jwks_url, oidc_jwks_cooldown=60))
    tokens.verify(idp.token(FIRST))
    fetched = idp.fetches
    for i in range(20):
        refused(tokens, idp.token(rsa_key(f"flood-{i}")))
    assert idp.fetches == fetched  # a flood of made-up key ids does not hammer the provider


def test_an_unreachable_provider_refuses_without_details(tmp_path: Path, idp: IdentityProvider,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}/jwks"
    tokens = TokenService(oidc_settings(tmp_path, dead))
    token = idp.token(FIRST)
    message = refused(tokens, token)
    assert "could not be fetched" in message and dead not in message and "127.0.0.1" not in message
    out = capsys.readouterr()
    assert token not in out.out + out.err


def test_oidc_needs_both_issuer_and_key_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="together"):
        TokenService(Settings(data_dir=tmp_path, oidc_issuer=ISSUER))
    with pytest.raises(ConfigError, match="together"):
        TokenService(Settings(data_dir=tmp_path, oidc_jwks_url="http://127.0.0.1:1/jwks"))
    # in OIDC mode the hub makes no signing key of its own
    TokenService(Settings(data_dir=tmp_path / "d", oidc_issuer=ISSUER, oidc_jwks_url="http://127.0.0.1:1/jwks"))
    assert not (tmp_path / "d" / "keys").exists()


@pytest.mark.parametrize("subject", ["9434765919", "cc-943 476 5919", "staff-2014-03-09"])
def test_a_subject_shaped_like_a_personal_identifier_is_refused_at_the_door(
        tmp_path: Path, tokens: TokenService, idp: IdentityProvider, subject: str) -> None:
    """The audit trail names who acts by pseudonymous ids: such a subject is refused when the token is
    verified (401 with the reason), not half-way through a request whose audit record it would fail."""
    message = refused(tokens, idp.token(FIRST, sub=subject, role="coordinator"))
    assert "shaped like an NHS number" in message and subject not in message
    own = TokenService(Settings(data_dir=tmp_path / "own", jwt_key=HUB_KEY))
    with pytest.raises(ConfigError, match="pseudonymous ids only"):
        own.create(subject, "coordinator")
    assert own.verify(own.create("cc-a943476591", "coordinator")).subject == "cc-a943476591"
