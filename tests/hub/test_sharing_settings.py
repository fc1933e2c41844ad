"""The sharing settings (``HUB_SHARING_*``, ``HUB_WEBHOOKS_FILE``): read when used, and a bad value is
refused with the variable's name rather than silently replaced by a default."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.core.errors import ConfigError
from hub.core.settings import sharing_settings
from hub.sharing import delivery


def test_values_are_read_when_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert delivery.max_attempts() == 8 and delivery.ack_hours() == 72
    monkeypatch.setenv("HUB_SHARING_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("HUB_SHARING_ACK_HOURS", "24")
    monkeypatch.setenv("HUB_WEBHOOKS_FILE", str(tmp_path / "hooks.json"))
    assert delivery.max_attempts() == 3 and delivery.ack_hours() == 24
    assert sharing_settings().webhooks_file == tmp_path / "hooks.json"


@pytest.mark.parametrize(("variable", "value"), [("HUB_SHARING_MAX_ATTEMPTS", "0"),
                                                  ("HUB_SHARING_RETRY_BASE", "soon"),
                                                  ("HUB_SHARING_READINESS_INTERVAL", "-5")])
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        sharing_settings()
