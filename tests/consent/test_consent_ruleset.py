"""Rule-set data loading (consent/ruleset.py, consent/rulesets/ruleset.json)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from consent import RuleSetError, load_ruleset
from consent.ruleset import REQUIRED_RULES, parse_ruleset


def _packaged() -> dict:
    return json.loads(
        resources.files("consent").joinpath("rulesets", "ruleset.json").read_text(encoding="utf-8")
    )


def test_packaged_ruleset_loads_with_version():
    rs = load_ruleset()
    assert rs.version == _packaged()["version"]
    assert set(rs.rules) >= REQUIRED_RULES
    assert all(r.reason.endswith(".") for r in rs.rules.values())


def test_load_from_path(tmp_path):
    data = _packaged()
    data["version"] = "test-9"
    p = tmp_path / "rs.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    assert load_ruleset(p).version == "test-9"


def test_missing_rule_rejected():
    data = _packaged()
    data["rules"] = [r for r in data["rules"] if r["id"] != "R3-default-deny"]
    with pytest.raises(RuleSetError, match="R3-default-deny"):
        parse_ruleset(data)


def test_bad_values_rejected(tmp_path):
    data = _packaged()
    data["rules"][0]["basis"] = "vibes"
    with pytest.raises(RuleSetError, match="malformed"):
        parse_ruleset(data)
    p = tmp_path / "broken.json"
    p.write_text("{", encoding="utf-8")
    with pytest.raises(RuleSetError, match="not valid JSON"):
        load_ruleset(p)
    with pytest.raises(RuleSetError, match="cannot read"):
        load_ruleset(tmp_path / "absent.json")
