"""The Dockerfile's base image digest against the registry: still published, still what its tag names.

The check against Docker Hub runs where the network allows (skipped with the reason offline); `make
base-image-check` runs it on its own. The same code is tested against a local registry stand-in that
answers as Docker Hub does (a bearer challenge, then manifests by tag and by digest).
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from .base_image import DOCKER_HUB, Pin, compare, pinned

PINNED = "sha256:" + "a" * 64
REBUILT = "sha256:" + "b" * 64


class Registry:
    """A registry stand-in: a token endpoint and manifests of library/python, by tag and by digest."""

    def __init__(self, tags: dict[str, str], digests: set[str]) -> None:
        outer = self
        self.tags, self.digests, self.authorised = tags, digests, 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # the token endpoint
                body = json.dumps({"token": "t0ken"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                if self.headers.get("Authorization") != "Bearer t0ken":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", f'Bearer realm="{outer.url}/token",'
                                                         'service="registry.test",scope="repository:library/python:pull"')
                    self.end_headers()
                    return
                outer.authorised += 1
                assert "application/vnd.oci.image.index.v1+json" in self.headers.get("Accept", "")
                reference = self.path.rsplit("/", 1)[1]
                digest = reference if reference in outer.digests else outer.tags.get(reference)
                self.send_response(200 if digest else 404)
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry() -> Iterator[Registry]:
    r = Registry({"3.11.10-slim-bookworm": PINNED}, {PINNED})
    yield r
    r.close()


PIN = Pin("library/python", "3.11.10-slim-bookworm", PINNED)


def test_the_dockerfile_pins_a_tag_and_a_digest() -> None:
    pin = pinned()
    assert pin.repository == "library/python" and pin.tag.startswith("3.11")
    assert pin.digest.startswith("sha256:") and len(pin.digest) == 71


def test_a_pin_the_tag_still_names_is_published_and_current(registry: Registry) -> None:
    with httpx.Client(timeout=5) as client:
        verdict = compare(client, registry.url, PIN)
    assert verdict.published and not verdict.moved and registry.authorised == 2
    assert verdict.text() == f"library/python:3.11.10-slim-bookworm is {PINNED}, as pinned"


def test_a_rebuilt_tag_is_reported_and_a_withdrawn_pin_fails(registry: Registry) -> None:
    registry.tags["3.11.10-slim-bookworm"] = REBUILT
    registry.digests.add(REBUILT)
    with httpx.Client(timeout=5) as client:
        moved = compare(client, registry.url, PIN)
        assert moved.published and moved.moved and REBUILT in moved.text() and "still builds" in moved.text()
        registry.digests.discard(PINNED)
        gone = compare(client, registry.url, PIN)
    assert not gone.published and "is no longer published" in gone.text()


def test_a_dockerfile_without_a_digest_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE}\n")
    with pytest.raises(ValueError, match="no ARG PYTHON_IMAGE=<image>:<tag>@sha256:<digest>"):
        pinned(bad)


def test_the_pinned_digest_against_docker_hub() -> None:
    """Network permitting: the pinned digest must still be published; a tag that moved is a warning."""
    try:
        with httpx.Client(timeout=10, follow_redirects=True) as client:
            verdict = compare(client, DOCKER_HUB)
    except httpx.TransportError as exc:
        pytest.skip(f"Docker Hub is not reachable from here ({type(exc).__name__}): the digest is not checked")
    assert verdict.published, verdict.text()
    if verdict.moved:
        warnings.warn(verdict.text(), stacklevel=1)
