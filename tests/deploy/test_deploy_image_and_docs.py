"""deploy/Dockerfile follows the image contract; docs/operations.md covers every setting and task."""

from __future__ import annotations

import json
import re

import pytest

from ._support import DOCKERFILE, HUB_SETTINGS, OPERATIONS_DOC, image_problem


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    if not froms or any(not f.startswith("python:3.11-slim") for f in froms):
        problems.append(f"base images {froms} are not python:3.11-slim")
    problems += [p for f in froms if (p := image_problem(f))]
    users = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("final USER is root or missing")
    entry = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("ENTRYPOINT ")]
    if not entry or json.loads(entry[-1]) != ["hub"]:
        problems.append(f'ENTRYPOINT is {entry}, want ["hub"]')
    if not any(re.search(r"pip install\s+(?:\S+\s+)*\.(?:\s|$|\[)", ln) for ln in lines):
        problems.append("the project is not installed with `pip install .`")
    return problems


def test_dockerfile_follows_the_image_contract() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("USER 10001:10001", "USER root", "root"),
        ('ENTRYPOINT ["hub"]', 'ENTRYPOINT ["python", "-m", "hub"]', "ENTRYPOINT"),
        ("FROM python:3.11-slim AS build", "FROM python:latest AS build", "python:3.11-slim"),
        (
            '/opt/hub/bin/pip install . "rocksdict',
            '/opt/hub/bin/pip install family-hub "rocksdict',
            "pip install .",
        ),
    ],
)
def test_dockerfile_check_catches_breakage(old: str, new: str, expect: str) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text
    assert any(expect in p for p in dockerfile_problems(text.replace(old, new)))


def test_dockerignore_sits_beside_the_dockerfile() -> None:
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert "deploy/secrets" in ignore, "secrets must never enter the build context"


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
        "rocksdb://",
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
