"""The Dockerfile's pinned base image, and what a registry answers for it (Docker Registry HTTP API v2).

:func:`pinned` reads ``ARG PYTHON_IMAGE=<repo>:<tag>@sha256:<digest>`` from deploy/Dockerfile;
:func:`manifest_digest` asks a registry for the digest of a tag or a digest (HEAD on
``/v2/<repo>/manifests/<reference>``, accepting the multi-platform index types, answering the bearer
challenge a registry such as Docker Hub sends first); :func:`compare` says whether the pin is still
published and still what the tag names. Used by tests/deploy/test_base_image_digest.py and
``make base-image-check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx

DOCKERFILE = Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile"
DOCKER_HUB = "https://registry-1.docker.io"
#: what the pin names: the multi-platform index (OCI or Docker), a single manifest as a fallback
ACCEPT = ", ".join(("application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"))
_ARG = re.compile(r"^ARG PYTHON_IMAGE=(?P<repo>[\w./-]+):(?P<tag>[\w.-]+)@(?P<digest>sha256:[0-9a-f]{64})$", re.M)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Pin:
    repository: str  # as the registry names it: library/python for Docker Hub's official images
    tag: str
    digest: str


def pinned(dockerfile: Path = DOCKERFILE) -> Pin:
    m = _ARG.search(dockerfile.read_text(encoding="utf-8"))
    if m is None:
        raise ValueError(f"{dockerfile} has no ARG PYTHON_IMAGE=<image>:<tag>@sha256:<digest>")
    repo = m["repo"] if "/" in m["repo"] else f"library/{m['repo']}"
    return Pin(repo, m["tag"], m["digest"])


def manifest_digest(client: httpx.Client, registry: str, repository: str, reference: str) -> str | None:
    """The registry's digest for ``reference`` (a tag or a digest), or None when it has no such manifest."""
    url = f"{registry}/v2/{repository}/manifests/{reference}"
    r = client.head(url, headers={"Accept": ACCEPT})
    if r.status_code == 401 and r.headers.get("www-authenticate", "").lower().startswith("bearer "):
        params = dict(_CHALLENGE.findall(r.headers["www-authenticate"]))
        realm = params.pop("realm")
        params.setdefault("scope", f"repository:{repository}:pull")
        token = client.get(realm, params=params).raise_for_status().json()
        bearer = token.get("token") or token.get("access_token")
        r = client.head(url, headers={"Accept": ACCEPT, "Authorization": f"Bearer {bearer}"})
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.headers.get("docker-content-digest") or reference


@dataclass(frozen=True)
class Verdict:
    published: bool  # the pinned digest can still be pulled (the build works)
    current: str | None  # what the tag names today
    pin: Pin

    @property
    def moved(self) -> bool:
        return self.current is not None and self.current != self.pin.digest

    def text(self) -> str:
        if not self.published:
            return (f"{self.pin.repository}@{self.pin.digest} is no longer published: refresh the pin in "
                    f"deploy/Dockerfile (docs/operations.md, 'Refresh the base image')")
        if self.moved:
            return (f"{self.pin.repository}:{self.pin.tag} now names {self.current}; the pin "
                    f"{self.pin.digest} still builds: refresh it for the tag's rebuilt layers")
        return f"{self.pin.repository}:{self.pin.tag} is {self.pin.digest}, as pinned"


def compare(client: httpx.Client, registry: str = DOCKER_HUB, pin: Pin | None = None) -> Verdict:
    pin = pin or pinned()
    published = manifest_digest(client, registry, pin.repository, pin.digest) is not None
    return Verdict(published, manifest_digest(client, registry, pin.repository, pin.tag), pin)
