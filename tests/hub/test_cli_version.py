"""`hub --version`: the installed distribution's version, from pyproject.toml, and nothing else runs."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from hub.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def test_version_prints_the_package_version_and_exits_0(tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = CliRunner().invoke(app, ["--version"], env={"HUB_DATA_DIR": str(tmp_path / "data")})
    assert (result.exit_code, result.output.strip()) == (0, f"hub {version}")
    assert not (tmp_path / "data").exists()  # no settings read, no database opened


def test_an_unknown_option_is_a_usage_error_with_exit_2() -> None:
    result = CliRunner().invoke(app, ["--versoin"])
    assert result.exit_code == 2 and "No such option" in result.output
