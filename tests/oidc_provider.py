"""A stand-in OIDC identity provider for tests: signing keys and a JWKS served over real HTTP.

The provider holds RSA and EC keys (made with ``cryptography``), publishes the public halves at
``/jwks`` on 127.0.0.1 and signs tokens with any of them. Keys can be added (rotation) and
withdrawn while it runs; ``fetches`` counts how often the hub asked for the key set.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

ISSUER = "https://idp.test/realms/familyhub"
AUDIENCE = "familyhub-api"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKeyTypes

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))  # type: ignore[union-attr]
        return jwk | {"kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


class IdentityProvider:
    def __init__(self, *keys: SigningKey) -> None:
        self.keys: dict[str, SigningKey] = {k.kid: k for k in keys}
        self.fetches = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def jwks_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/jwks"

    def publish(self, key: SigningKey) -> None:
        with self._lock:
            self.keys[key.kid] = key

    def withdraw(self, kid: str) -> None:
        with self._lock:
            self.keys.pop(kid)

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            self.fetches += 1
            return {"keys": [k.public_jwk() for k in self.keys.values()]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-4711", "role": "coordinator", "iat": now,
                "nbf": now, "exp": now + 600}
        return {k: v for k, v in (base | overrides).items() if v is not None}

    def token(self, key: SigningKey, **claims: Any) -> str:
        return jwt.encode(self.claims(**claims), key.private, algorithm=key.alg,  # type: ignore[arg-type]
                          headers={"kid": key.kid})

    @contextmanager
    def serving(self) -> Iterator[IdentityProvider]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                body = json.dumps(provider.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


def unsigned(claims: dict[str, Any], kid: str) -> str:
    """A token with ``alg: none`` and no signature."""
    return jwt.encode(claims, None, algorithm="none", headers={"kid": kid})


def hmac_with_public_key(claims: dict[str, Any], key: SigningKey) -> str:
    """The algorithm-confusion forgery: HS256 keyed with the provider's published public key."""
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"
