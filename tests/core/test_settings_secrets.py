"""Secret settings are SecretStr: no repr, log line or dump of the settings shows them."""

from __future__ import annotations

from pydantic import SecretStr

from hub.core.settings import Settings

SECRETS = {"pseudonym_key": "pseudonym-secret-0123456789", "jwt_key": "jwt-secret-0123456789abcdef",
           "payload_master_key": "master-secret-0123456789abcdef", "kafka_sasl_password": "sasl-secret-0123",
           "metrics_token": "scraper-secret-0123456789", "session_key": "session-secret-0123456789",
           "schema_registry_password": "registry-secret-0123", "oidc_client_secret": "client-secret-0123456789"}


def test_every_secret_setting_is_a_secret_string() -> None:
    secret_like = {name for name in Settings.model_fields
                   if name.endswith(("_key", "_password", "_token", "_secret")) and not name.endswith("_file")}
    assert secret_like == set(SECRETS)
    for name in secret_like:
        assert Settings.model_fields[name].annotation is SecretStr, name


def test_settings_never_show_a_secret_and_the_hub_still_reads_it() -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL", **SECRETS)  # type: ignore[arg-type]
    shown = " ".join([repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())])
    for value in SECRETS.values():
        assert value not in shown
    assert settings.kafka_client_options()["sasl_plain_password"] == SECRETS["kafka_sasl_password"]
    assert settings.jwt_key.get_secret_value() == SECRETS["jwt_key"]


def test_a_secret_from_the_environment_is_read(monkeypatch) -> None:
    monkeypatch.setenv("HUB_JWT_KEY", "from-the-environment-0123456789")
    assert Settings().jwt_key.get_secret_value() == "from-the-environment-0123456789"
