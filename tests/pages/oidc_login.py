"""A stand-in identity provider for the pages' sign-in: the key set, an authorisation endpoint that signs in
whoever the test says (no login form) and a token endpoint that checks the PKCE verifier, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from tests.oidc_provider import AUDIENCE, IdentityProvider, SigningKey

CLIENT = "hub-pages"


@dataclass
class LoginProvider:
    idp: IdentityProvider
    key: SigningKey
    claims: dict[str, Any] = field(default_factory=lambda: {"sub": "user-4711", "role": "coordinator"})
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    base: str = ""

    def authorize(self, query: dict[str, str]) -> str:
        """Where the browser goes next: back to the client with a code bound to the challenge and nonce."""
        assert query["response_type"] == "code" and query["client_id"] == CLIENT
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None or form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != asked["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        access = self.idp.token(self.key, aud=AUDIENCE, **self.claims)
        ident = self.idp.token(self.key, aud=CLIENT, nonce=asked["nonce"], sub=self.claims["sub"], role=None)
        return 200, {"access_token": access, "id_token": ident, "token_type": "Bearer"}

    @contextmanager
    def serving(self) -> Iterator[LoginProvider]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, body: dict[str, Any], location: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/jwks":
                    self.answer(200, provider.idp.jwks())
                elif url.path == "/authorize":
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    self.answer(302, {}, provider.authorize(query))
                else:
                    self.answer(404, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                self.answer(*provider.token(form))

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        host, port = server.server_address[:2]
        self.base = f"http://{host!s}:{port}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
