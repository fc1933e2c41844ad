"""The schema registry client (confluent-kafka's) with authentication, TLS and retries, against a local
registry server standing in for Confluent's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.core.errors import BrokerError
from hub.core.settings import Settings
from hub.wire.registry import RegistryClient, RegistryConfig, registry_config
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import ConfluentSerde, make_serde, warm
from tests.hub.registry_server import TestRegistry
from tests.hub.test_serde import report
from tests.tls_support import TlsFiles, make_tls_files

ROOT = Path(__file__).resolve().parents[2]
CAT = SchemaCatalogue(ROOT / "schemas")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("registry-tls"))


@pytest.fixture
def registry(tls: TlsFiles) -> Iterator[TestRegistry]:
    reg = TestRegistry(user="hub-key", password="hub-secret", tls=tls)
    yield reg
    reg.close()


def secure(reg: TestRegistry, tls: TlsFiles, **changes: object) -> RegistryConfig:
    base = dict(url=reg.url, username="hub-key", password="hub-secret", ca_file=str(tls.ca), retry_wait_ms=10)
    base.update(changes)
    return RegistryConfig(**base)  # type: ignore[arg-type]


def test_over_tls_with_basic_auth_the_serde_warms_then_needs_no_registry_call(
        registry: TestRegistry, tls: TlsFiles) -> None:
    serde = ConfluentSerde(CAT, RegistryClient(secure(registry, tls)))
    warm(serde)
    registered = len(registry.schemas)
    assert registered >= len(CAT.current)  # every current schema, under its full name
    calls = len(registry.requests)
    data = serde.encode("ReportIssued", report())
    assert serde.decode(data).record == report()
    assert len(registry.requests) == calls  # encode and decode read the caches, not the registry
    other = ConfluentSerde(CAT, RegistryClient(secure(registry, tls)))
    assert other.decode(data).record == report()  # a second process fetches the id once


def test_the_settings_configure_auth_tls_and_retries(registry: TestRegistry, tls: TlsFiles) -> None:
    settings = Settings(schema_registry_url=registry.url, schema_registry_username="hub-key",
                        schema_registry_password="hub-secret", schema_registry_ca_file=str(tls.ca),
                        schema_registry_retries=5)  # type: ignore[arg-type]
    config = registry_config(settings)
    assert config is not None and config.retries == 5 and config.password == "hub-secret"
    assert "hub-secret" not in repr(config) and "hub-secret" not in repr(settings)
    serde = make_serde(CAT, config)
    assert serde.decode(serde.encode("ReportIssued", report())).record == report()
    assert registry_config(Settings()) is None  # no registry: single-object encoding


def test_a_registry_that_fails_at_first_is_retried(tls: TlsFiles) -> None:
    reg = TestRegistry(user="hub-key", password="hub-secret", tls=tls, fail_first=2)
    try:
        sid = RegistryClient(secure(reg, tls)).register("uk.familyhub.event.ReportIssued",
                                                        CAT.writer("ReportIssued").schema)
        assert sid == 1 and len(reg.requests) == 3  # two 503s, then the registration
    finally:
        reg.close()


def test_wrong_credentials_are_refused_with_the_registry_named(registry: TestRegistry, tls: TlsFiles) -> None:
    client = RegistryClient(secure(registry, tls, password="guess"))
    with pytest.raises(BrokerError, match=f"schema registry {registry.url} could not register") as err:
        client.register("uk.familyhub.event.ReportIssued", CAT.writer("ReportIssued").schema)
    assert "guess" not in str(err.value)
    assert registry.schemas == {}  # nothing was registered


def test_an_untrusted_certificate_is_refused(registry: TestRegistry, tls: TlsFiles) -> None:
    client = RegistryClient(secure(registry, tls, ca_file="", retries=0))
    with pytest.raises(BrokerError, match="could not register"):
        client.register("uk.familyhub.event.ReportIssued", CAT.writer("ReportIssued").schema)
    assert registry.schemas == {}
