"""deploy/Dockerfile follows the image contract; docs/operations.md covers every setting and task."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from ._support import DOCKERFILE, HUB_SETTINGS, OPERATIONS_DOC, REPO, image_problem

DIGEST_PINNED = re.compile(r"^python:3\.11(?:\.\d+)?-slim(?:-\w+)?@sha256:[0-9a-f]{64}$")


def base_images(lines: list[str]) -> list[str]:
    """The FROM images of every stage, with `${ARG}` replaced by the ARG's default (as `docker build` does)."""
    args = dict(ln.split(None, 1)[1].partition("=")[::2] for ln in lines if ln.upper().startswith("ARG ") and "=" in ln)
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    return [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), f) for f in froms]


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    text = text.replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = base_images(lines)
    if not froms or any(not DIGEST_PINNED.match(f) for f in froms):
        problems.append(f"base images {froms} are not python:3.11 slim pinned by @sha256 digest")
    problems += [p for f in froms if (p := image_problem(f))]
    users = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("final USER is root or missing")
    entry = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("ENTRYPOINT ")]
    if not entry or json.loads(entry[-1]) != ["hub"]:
        problems.append(f'ENTRYPOINT is {entry}, want ["hub"]')
    runs = " ".join(ln for ln in lines if ln.upper().startswith("RUN "))
    if "--require-hashes" not in runs or "-r deploy/requirements.lock" not in runs:
        problems.append("dependencies are not installed from deploy/requirements.lock with --require-hashes")
    if not re.search(r"pip install\s+(?:--[\w-]+\s+)*--no-deps\s+(?:--[\w-]+\s+)*\.(?:\s|$)", runs):
        problems.append("the project is not installed with `pip install --no-deps .` (its dependencies come "
                        "from the lockfile)")
    if "HUB_SCHEMA_DIR" in text or "/app/schemas" in text:
        problems.append("the image points HUB_SCHEMA_DIR at copied schemas; the package carries them")
    return problems


def test_dockerfile_follows_the_image_contract() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("USER 10001:10001", "USER root", "root"),
        ('ENTRYPOINT ["hub"]', 'ENTRYPOINT ["python", "-m", "hub"]', "ENTRYPOINT"),
        ("FROM ${PYTHON_IMAGE} AS build", "FROM python:3.11-slim AS build", "@sha256"),
        ("ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:", "ARG PYTHON_IMAGE=python:latest@sha256:",
         "python:3.11"),
        ("--require-hashes", "", "--require-hashes"),
        ("pip install --no-deps --no-build-isolation .", "pip install --no-build-isolation family-hub",
         "--no-deps ."),
        ("COPY --from=build /opt/hub /opt/hub", "COPY --from=build /opt/hub /opt/hub\nENV HUB_SCHEMA_DIR=/app/schemas",
         "HUB_SCHEMA_DIR"),
    ],
)
def test_dockerfile_check_catches_breakage(old: str, new: str, expect: str) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text
    assert any(expect in p for p in dockerfile_problems(text.replace(old, new)))


def test_the_build_context_is_an_allow_list_without_local_state_or_secrets() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "the context starts from nothing"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "hub", "connectors", "consent", "schemas",
                       "deploy/requirements.lock"}
    assert not {".hub", ".env", ".venv", "tests", "deploy/secrets", "deploy"} & allowed
    # what the Dockerfile copies by name is in the context
    for copied in re.findall(r"^COPY (?!--from)(\S+) ", DOCKERFILE.read_text(encoding="utf-8"), re.M):
        assert copied == "." or copied in allowed, copied
    assert not DOCKERFILE.with_name("Dockerfile.dockerignore").exists(), "one ignore file, at the context root"


def test_the_lockfile_pins_every_dependency_with_hashes() -> None:
    lock = (REPO / "deploy" / "requirements.lock").read_text(encoding="utf-8")
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\$", lock, re.M))
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 2)[2])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b), "a pin without a hash"

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pinned = {norm(n) for n in pins}
    wanted = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    names = {norm(re.match(r"[A-Za-z0-9._-]+", d)[0]) for d in wanted}  # type: ignore[index]
    assert names <= pinned, f"pyproject dependencies missing from the lock (run `make lock`): {names - pinned}"
    assert {"setuptools", "wheel"} <= pinned, "the build backend is pinned too"


def test_operations_doc_covers_every_setting_and_task() -> None:
    doc = OPERATIONS_DOC.read_text(encoding="utf-8")
    table_rows = {m.group(1) for m in re.finditer(r"^\| `(HUB_[A-Z_]+)` \|", doc, re.M)}
    assert set(HUB_SETTINGS) <= table_rows, (
        f"missing from the settings table: {set(HUB_SETTINGS) - table_rows}"
    )
    for needle in (
        "hub up",
        "hub migrate",
        "hub topics --create",
        "hub replay",
        "kafka-consumer-groups.sh",
        "--reset-offsets",
        "pg_dump",
        "pg_restore",
        ".backup",
        "acks=all",
        "exactly_once",
        "kubectl kustomize deploy/k8s/overlays/production",
        "payload-master-key",
        "metrics-token",
        "retention.ms=-1",
        "min.insync.replicas",
        "/metrics",
        "HUB_PSEUDONYM_KEY_FILE",
        "HUB_JWT_KEY_FILE",
    ):
        assert needle in doc, needle
    for heading in (
        "## Install",
        "## Configure",
        "## Production settings",
        "## Scale workers",
        "## Rotate keys",
        "## Back up and restore",
        "## Replay",
        "## Read the metrics",
        "## When a worker will not recover",
    ):
        assert heading in doc, heading
