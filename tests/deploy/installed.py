"""The hub as the image holds it: the wheel built from this checkout, installed from the hashed lockfile
into a fresh virtual environment, run from a directory that has nothing to do with the checkout.

Building needs the package index (setuptools for the wheel, the locked dependencies): where it cannot be
reached, the tests that need the installed hub are skipped with the reason, never failed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._support import DOCKERFILE, REPO

LOCKFILE = REPO / "deploy" / "requirements.lock"
#: pip's words when the index cannot give it what it asked for: the machine cannot build here
UNREACHABLE = ("No matching distribution found", "Could not find a version", "Failed to establish a new connection",
               "Network is unreachable", "Temporary failure in name resolution")


@dataclass(frozen=True)
class InstalledHub:
    wheel: Path
    venv: Path
    workdir: Path  # an unrelated directory the commands run in

    @property
    def hub(self) -> str:
        return str(self.venv / "bin" / "hub")

    def env(self, **settings: str) -> dict[str, str]:
        """A clean environment: no HUB_* of the caller, no PYTHONPATH pointing back at the checkout."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("HUB_", "PYTHON", "VIRTUAL_ENV")) and k != "PATH"}
        keep["PATH"] = f"{self.venv / 'bin'}:/usr/bin:/bin"
        keep.update(settings)
        return keep


def _pip(python: Path | str, *args: str, cwd: Path) -> None:
    done = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=540)
    if done.returncode != 0:
        said = done.stderr + done.stdout
        if any(reason in said for reason in UNREACHABLE):
            pytest.skip(f"cannot build the wheel here (the package index is out of reach): {said.strip()[-300:]}")
        raise AssertionError(f"pip {shlex.join(args)} failed:\n{said[-3000:]}")


def build_context(target: Path) -> Path:
    """What `docker build` sends: the checkout through the .dockerignore allow-list (links kept as links)."""
    allowed = [ln[1:].strip().rstrip("/") for ln in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if ln.startswith("!")]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".env", ".hub")
    for name in allowed:
        source, dest = REPO / name, target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, dest)
    return target


def build_and_install(base: Path) -> InstalledHub:
    """`pip wheel` of the build context, then what deploy/Dockerfile does: the lockfile with hashes, the wheel."""
    dist, env_dir, workdir = base / "dist", base / "venv", base / "elsewhere"
    workdir.mkdir(parents=True)
    context = build_context(base / "context")
    _pip(sys.executable, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(context), cwd=base)
    (wheel,) = dist.glob("family_hub-*.whl")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    _pip(python, "install", "--quiet", "--no-compile", "--require-hashes", "--no-deps", "-r", str(LOCKFILE), cwd=base)
    _pip(python, "install", "--quiet", "--no-deps", str(wheel), cwd=base)
    _pip(python, "check", cwd=base)
    return InstalledHub(wheel=wheel, venv=env_dir, workdir=workdir)


@dataclass(frozen=True)
class ImageCommand:
    """What `docker run` of deploy/Dockerfile's final stage runs: its ENV, ENTRYPOINT and CMD."""

    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]


def image_command(text: str | None = None) -> ImageCommand:
    import json

    text = text if text is not None else DOCKERFILE.read_text(encoding="utf-8")
    joined = text.replace("\\\n", " ")
    final = joined.split("\nFROM ")[-1]  # the last stage is the image
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    cmd: list[str] = []
    for line in final.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
    return ImageCommand(env=env, entrypoint=entrypoint, cmd=cmd)
