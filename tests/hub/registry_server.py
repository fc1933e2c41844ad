"""A Confluent-compatible schema registry at the edge of the world: a local HTTP(S) server speaking the
part of the REST API the hub's client uses, with basic authentication and injectable failures."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
from typing import Any
from urllib.parse import unquote, urlparse

from tests.tls_support import TlsFiles


class TestRegistry:
    __test__ = False  # not a test class

    def __init__(self, *, user: str = "", password: str = "", tls: TlsFiles | None = None,
                 fail_first: int = 0) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_left = fail_first
        outer = self
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user else None

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _gate(self) -> bool:
                outer.requests.append((self.command, self.path))
                if outer.fail_left > 0:
                    outer.fail_left -= 1
                    self._answer(503, {"error_code": 50301, "message": "try later"})
                    return False
                if expected is not None and self.headers.get("Authorization") != expected:
                    self._answer(401, {"error_code": 401, "message": "Unauthorized"})
                    return False
                return True

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                if not self._gate():
                    return
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                schema = body.get("schema", "")
                if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                    sid = outer.register(parts[1], schema)
                    self._answer(200, {"id": sid})
                elif len(parts) == 2 and parts[0] == "subjects":
                    sid = outer.subjects.get((parts[1], json.dumps(json.loads(schema), sort_keys=True)))
                    if sid is None:
                        self._answer(404, {"error_code": 40403, "message": "Schema not found"})
                    else:
                        self._answer(200, {"subject": parts[1], "id": sid, "version": 1, "schema": schema})
                else:
                    self._answer(404, {"error_code": 404, "message": "no such route"})

            def do_GET(self) -> None:
                if not self._gate():
                    return
                parts = urlparse(self.path).path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and int(parts[2]) in outer.schemas:
                    self._answer(200, {"schema": outer.schemas[int(parts[2])]})
                else:
                    self._answer(404, {"error_code": 40403, "message": "Schema not found"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.server_cert, tls.server_key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def register(self, subject: str, schema: str) -> int:
        key = (subject, json.dumps(json.loads(schema), sort_keys=True))
        if key not in self.subjects:
            sid = next((i for i, s in self.schemas.items() if s == schema), len(self.schemas) + 1)
            self.schemas[sid] = schema
            self.subjects[key] = sid
        return self.subjects[key]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
