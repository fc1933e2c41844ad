"""The schema registry client: Confluent's own ``SchemaRegistryClient`` (confluent-kafka), configured
from ``HUB_SCHEMA_REGISTRY_*``.

Why this client: it is the registry vendor's maintained client, speaks every registry that follows
the Confluent REST API (Confluent Platform and Cloud, Karapace, Apicurio's compatibility API,
Redpanda), and brings what a hand-written one lacked: basic and bearer authentication, TLS with a
private CA and client certificates, retries with jittered backoff on 408/429/5xx and connection
errors, and caches of ids and schemas. It is synchronous, so the hub calls it off the event loop:
:meth:`hub.wire.serde.ConfluentSerde.warm` registers the current schemas and looks up every
released version in a thread when a process starts (``Services.start``), after which encoding and
decoding read the caches; only a schema id the hub has never seen (written by a newer hub during a
rolling upgrade) is fetched while decoding, once.

Errors: an unknown schema id is :class:`~hub.core.errors.UnknownFingerprintError` (the record is
dead-lettered); a registry that cannot be reached or refuses after the retries is
:class:`~hub.core.errors.BrokerError` (503, retry later), never a silent success.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from hub.core.errors import BrokerError, UnknownFingerprintError

_NOT_FOUND = (40401, 40402, 40403)


@dataclass(frozen=True)
class RegistryConfig:
    url: str
    username: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    timeout: float = 10.0
    retries: int = 3
    retry_wait_ms: int = 200

    def __repr__(self) -> str:
        return f"RegistryConfig(url={self.url!r}, username={self.username!r}, password=<redacted>)"

    def client_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"url": self.url, "timeout": self.timeout, "max.retries": self.retries,
                                "retries.wait.ms": self.retry_wait_ms}
        if self.username:
            conf["basic.auth.user.info"] = f"{self.username}:{self.password}"
        if self.ca_file:
            conf["ssl.ca.location"] = self.ca_file
        if self.cert_file:
            conf["ssl.certificate.location"] = self.cert_file
            conf["ssl.key.location"] = self.key_file or self.cert_file
        return conf


def registry_config(settings: Any) -> RegistryConfig | None:
    """The registry of the hub's settings, or None when ``HUB_SCHEMA_REGISTRY_URL`` is empty."""
    url = getattr(settings, "schema_registry_url", "")
    if not url:
        return None
    password = getattr(settings, "schema_registry_password", "")
    return RegistryConfig(
        url=url, username=getattr(settings, "schema_registry_username", ""),
        password=password.get_secret_value() if hasattr(password, "get_secret_value") else str(password),
        ca_file=str(getattr(settings, "schema_registry_ca_file", "") or ""),
        cert_file=str(getattr(settings, "schema_registry_cert_file", "") or ""),
        key_file=str(getattr(settings, "schema_registry_key_file", "") or ""),
        retries=int(getattr(settings, "schema_registry_retries", 3)))


class RegistryClient:
    """What the hub asks of a schema registry: register, look up, fetch by id."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.client = SchemaRegistryClient(config.client_conf())

    def _unavailable(self, what: str, exc: Exception) -> BrokerError:
        return BrokerError(f"schema registry {self.config.url} could not {what}: {exc}")

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        try:
            return int(self.client.register_schema(subject, Schema(json.dumps(schema), "AVRO")))
        except Exception as exc:
            raise self._unavailable(f"register {subject}", exc) from exc

    def lookup(self, subject: str, schema: dict[str, Any]) -> int | None:
        """The id of ``schema`` under ``subject`` if the registry has it (nothing is registered)."""
        try:
            found = self.client.lookup_schema(subject, Schema(json.dumps(schema), "AVRO"))
        except SchemaRegistryError as exc:
            if exc.error_code in _NOT_FOUND or exc.http_status_code == 404:
                return None
            raise self._unavailable(f"look up {subject}", exc) from exc
        except Exception as exc:
            raise self._unavailable(f"look up {subject}", exc) from exc
        return int(found.schema_id) if found.schema_id is not None else None

    def schema(self, schema_id: int) -> dict[str, Any]:
        try:
            found = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.error_code in _NOT_FOUND or exc.http_status_code == 404:
                raise UnknownFingerprintError(f"schema id {schema_id} is not in the registry") from exc
            raise self._unavailable(f"fetch schema id {schema_id}", exc) from exc
        except Exception as exc:
            raise self._unavailable(f"fetch schema id {schema_id}", exc) from exc
        loaded: dict[str, Any] = json.loads(found.schema_str or "null")
        return loaded
