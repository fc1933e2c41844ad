"""All settings, from ``HUB_*`` environment variables (or a ``.env`` file). The one place they are documented.

| variable | default | meaning |
|---|---|---|
| HUB_KAFKA_BOOTSTRAP | (empty) | Kafka bootstrap servers. Empty: `hub up` starts the embedded broker. |
| HUB_DATABASE_URL | sqlite:///<data_dir>/hub.db | SQLAlchemy URL; `postgresql+psycopg://…` for PostgreSQL. |
| HUB_DATA_DIR | ./.hub | State: SQLite file, keys, worker table data, broker logs. |
| HUB_SCHEMA_DIR | (in the package) | Override of the `.avsc` directory shipped in the package (trying schemas out). |
| HUB_SCHEMA_REGISTRY_URL | (empty) | Confluent-compatible registry; set to use the Confluent wire format. |
| HUB_SCHEMA_REGISTRY_USERNAME / _PASSWORD | (empty) | Basic authentication to the registry (an API key and secret). |
| HUB_SCHEMA_REGISTRY_CA_FILE | (system CAs) | PEM CA bundle the registry's TLS certificate is checked against. |
| HUB_SCHEMA_REGISTRY_CERT_FILE / _KEY_FILE | (none) | Client certificate and key for mutual TLS to the registry. |
| HUB_SCHEMA_REGISTRY_RETRIES | 3 | Retries (jittered backoff) of a registry call on 408, 429, 5xx or no connection. |
| HUB_API_HOST / HUB_API_PORT | 127.0.0.1 / 8080 | HTTP API address. |
| HUB_WORKERS | 1 | Stream worker processes `hub up` starts. |
| HUB_WORKER_STORE | memory:// | faust table store; the worker keeps no tables, so nothing to persist. |
| HUB_WORKER_REBALANCE_TIMEOUT | 2 / 60 | Group rebalance timeout, s (embedded / Kafka); tansu holds a join this long. |
| HUB_WORKER_SESSION_TIMEOUT | 4 / 60 | Seconds before a silent worker's partitions go to the others. |
| HUB_WORKER_FETCH_WAIT_MS | 20 / 500 | Longest a worker's fetch waits for data (embedded / Kafka). |
| HUB_PROCESSING_GUARANTEE | at_least_once | faust processing guarantee (`exactly_once` on Apache Kafka). |
| HUB_DELIVERY_MODE | auto | Who delivers shares: `worker`, `process` (`hub deliver`); auto: process under `hub up`. |
| HUB_PROBE_PORT | none | `hub worker` / `hub deliver` serve `/healthz` and `/readyz` here (8080 in deploy/). |
| HUB_TOPIC_PARTITIONS | 4 | Partitions for new topics. |
| HUB_TOPIC_REPLICATION_FACTOR | 1 | Replication factor for new topics (3 in production). |
| HUB_TOPIC_MIN_INSYNC_REPLICAS | 1 | min.insync.replicas for new topics (2 in production). |
| HUB_KAFKA_IDEMPOTENCE | auto | Idempotent producer: on for Kafka, off on the embedded broker (refused there). |
| HUB_KAFKA_SECURITY_PROTOCOL | PLAINTEXT | PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. |
| HUB_KAFKA_SASL_MECHANISM / _USERNAME / _PASSWORD | (empty) | SASL settings. |
| HUB_KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE | (empty) | TLS files. |
| HUB_PSEUDONYM_KEY / HUB_PSEUDONYM_KEY_FILE | (generated in data dir) | Secret for keyed-HMAC pseudonyms. |
| HUB_JWT_KEY / HUB_JWT_KEY_FILE | (generated) | HS256 key for the hub's own tokens (`hub token create`). |
| HUB_JWT_ISSUER / HUB_JWT_AUDIENCE | familyhub / familyhub-api | iss and aud of the hub's own tokens. |
| HUB_JWT_LEEWAY | 30 | Clock skew allowed on exp/nbf/iat, seconds. |
| HUB_OIDC_ISSUER / _AUDIENCE / _JWKS_URL | (empty) | Production: only this OIDC issuer's tokens, keys from its JWKS. |
| HUB_OIDC_CLIENT_ID / _CLIENT_SECRET | (empty) | The pages' OIDC client (code flow, PKCE); secret if confidential. |
| HUB_OIDC_AUTHORIZE_URL / _TOKEN_URL | (empty) | The issuer's authorisation and token endpoints for the pages. |
| HUB_OIDC_REDIRECT_URL | (empty) | The pages' callback as the issuer knows it, `https://<hub>/sign-in/oidc/callback`. |
| HUB_OIDC_JWKS_LIFESPAN | 300 | Seconds the JWKS is cached; a key the issuer removes stops verifying in this time. |
| HUB_OIDC_JWKS_COOLDOWN | 30 | Shortest interval, s, between refetches forced by a token with an unknown key id. |
| HUB_METRICS_INTERVAL | 15 | Seconds between background samples of the hub-wide metrics (one API replica). |
| HUB_METRICS_TOKEN / _FILE | (none) | Static bearer credential for `GET /metrics` only (role monitor); never expires. |
| HUB_PAYLOAD_MASTER_KEY / _FILE | (generated) | Wraps the per-subject record keys; one per line, current first. |
| HUB_RETENTION_POLICY / _FILE | (empty) | JSON: producing agency id or `*` to days (`hub retention apply`). |
| HUB_AGENCIES_FILE | (none) | Agency registry, JSON (YAML with PyYAML): `hub/governance/agencies.py`. |
| HUB_AUDIT_SIGNING_KEY_FILE | (generated) | Ed25519 PEM key signing audit checkpoints (below). |
| HUB_AUDIT_PUBLIC_KEYS_FILE | (signing key's) | PEM public keys `hub audit verify` trusts checkpoints from. |
| HUB_AUDIT_CHECKPOINT_FILE | (in data dir) | Append-only JSON lines of signed checkpoints (below). |
| HUB_AUDIT_CHECKPOINT_INTERVAL | 60 | Seconds between audit checkpoints (0: none); the chores lease holder. |
| HUB_AUDIT_TSA_URL | (empty) | RFC 3161 timestamp authority stamping each checkpoint. |
| HUB_MAX_BODY_BYTES | 5242880 | Largest accepted request body. |
| HUB_API_DOCS | auto | Serve `/docs`, `/redoc`, `/openapi.json` (no token); off: 404. auto: embedded demo only. |
| HUB_MAX_BODY_BYTES | 5242880 | Largest accepted request body on every route, chunked or not (413 beyond). |
| HUB_KAFKA_MAX_REQUEST_BYTES | 1048576 | Producer request limit; a record may be this less 16 KiB (413, unlogged). |
| HUB_SESSION_KEY / _FILE | (generated in data dir) | Signs the pages' session cookies (hub/pages). |
| HUB_SESSION_HOURS | 8 | A page session lasts this long after sign-in. |
| HUB_SESSION_SECURE_COOKIE | true | Session cookie over HTTPS only (browsers count http://127.0.0.1 as secure). |
| HUB_SIGNIN_LINK_MINUTES | 15 | A one-time sign-in link (`hub demo --serve`, `hub signin-link`) expires after this. |
| HUB_LOG_LEVEL | INFO | Log level; logs are JSON lines on stdout. |
| HUB_LOG_FORMAT | json | `json` or `console`. |
| HUB_TRACING_EXPORTER | none | OpenTelemetry: `none` (trace ids in logs and Kafka headers only) or `otlp`. |
| HUB_TRACING_OTLP_ENDPOINT | (empty) | OTLP/HTTP traces URL (`http://collector:4318/v1/traces`); empty: OTEL_*. |
| HUB_TRACING_SAMPLE_RATIO | 1.0 | Share of new traces recorded (0 to 1); a record follows its request's. |

Audit checkpoints (:mod:`hub.governance.checkpoints`, docs/operations.md "Audit checkpoints"): the head of
the audit chain is signed every HUB_AUDIT_CHECKPOINT_INTERVAL seconds with the key in
HUB_AUDIT_SIGNING_KEY_FILE (default ``<data dir>/keys/audit-signing.key``, generated with mode 0600 when
absent; keep it apart from the database and the payload master key) and appended to
HUB_AUDIT_CHECKPOINT_FILE (default ``<data dir>/audit/checkpoints.jsonl``) and the
``hub.audit.checkpoints`` topic. Verifiers trust the keys in HUB_AUDIT_PUBLIC_KEYS_FILE (old and new
after a rotation; `hub audit public-key` prints one), else the signing key's own.

Sharing (:class:`SharingSettings`, read when used, so a change applies from the next delivery pass):

| variable | default | meaning |
|---|---|---|
| HUB_WEBHOOKS_FILE | (none) | JSON agency id → webhook url and shared secret (re-read when it changes). |
| HUB_SHARING_MAX_ATTEMPTS | 8 | Webhook attempts before a delivery fails (dead letter) and the coordinator is told. |
| HUB_SHARING_RETRY_BASE | 2 | Seconds before the first retry; doubles each attempt (jittered), capped at an hour. |
| HUB_SHARING_ACK_HOURS | 72 | Hours a share (webhook, or inbox read or unread) may go unacknowledged before an alert. |
| HUB_SHARING_READINESS_INTERVAL | 300 | Seconds between readiness sweeps (coordinator alerts before appointments). |
| HUB_SHARING_COORDINATION_INTERVAL | 60 | Seconds between sweeps of the coordination alert rules. |
| HUB_SHARING_MEMO_RECORDS | 10000 | Timeline entries the sharing step keeps opened between passes (0: none). |
| HUB_STATUTORY_NATIONS | (all) | Comma-separated nations whose statutory clocks run (`england`, `wales`). |
| HUB_STATUTORY_WARN_DAYS | 14 | Days before a statutory deadline a running clock raises an alert. |
| HUB_ALERT_RULES_FILE | (none) | JSON: alert rule id → parameters or `"enabled": false` (docs/operations.md). |
| HUB_ALERT_RETENTION_DAYS | 365 | Days a resolved alert and its change-feed rows are kept (0: for ever). |
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.core.records import default_schema_dir

#: bytes of a producer request kept for a record's envelope headers and Kafka's batch framing
RECORD_HEADROOM = 16 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = ""
    database_url: str = ""
    data_dir: Path = Path(".hub")
    schema_dir: Path = Field(default_factory=default_schema_dir)
    schema_registry_url: str = ""
    schema_registry_username: str = ""
    schema_registry_password: SecretStr = SecretStr("")
    schema_registry_ca_file: str = ""
    schema_registry_cert_file: str = ""
    schema_registry_key_file: str = ""
    schema_registry_retries: int = 3

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    workers: int = 1
    worker_store: str = "memory://"
    worker_rebalance_timeout: float | None = None  # None: 2 s on the embedded broker, 60 s on Kafka
    worker_session_timeout: float | None = None  # None: 4 s on the embedded broker (a join waits half), 60 s on Kafka
    worker_fetch_wait_ms: int | None = None  # None: 20 ms on the embedded broker, 500 ms on Kafka
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    #: auto: `hub up` runs one `hub deliver` and its workers only decide; a bare `hub worker` delivers itself
    delivery_mode: Literal["auto", "worker", "process"] = "auto"
    #: health probes of the processes without the API (`hub worker`, `hub deliver`); none when unset
    probe_port: int | None = None

    topic_partitions: int = 4
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1

    kafka_embedded: bool = False  # set by `hub up` for its children when it runs the embedded broker
    kafka_idempotence: bool | None = None  # None: on for an external Kafka, off on the embedded broker
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""

    pseudonym_key: SecretStr = SecretStr("")
    pseudonym_key_file: Path | None = None

    jwt_key: SecretStr = SecretStr("")
    jwt_key_file: Path | None = None
    jwt_issuer: str = "familyhub"
    jwt_audience: str = "familyhub-api"
    jwt_leeway: float = 30.0
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_authorize_url: str = ""
    oidc_token_url: str = ""
    oidc_redirect_url: str = ""
    oidc_jwks_lifespan: float = Field(default=300.0, gt=0)
    oidc_jwks_cooldown: float = Field(default=30.0, ge=0)

    #: a static bearer credential for GET /metrics only (role monitor): a scraper's, which never expires
    metrics_token: SecretStr = SecretStr("")
    metrics_token_file: Path | None = None
    metrics_interval: float = Field(default=15.0, gt=0)

    payload_master_key: SecretStr = SecretStr("")
    payload_master_key_file: Path | None = None
    retention_policy: str = ""
    retention_policy_file: Path | None = None
    audit_signing_key_file: Path | None = None
    audit_public_keys_file: Path | None = None
    audit_checkpoint_file: Path | None = None
    audit_checkpoint_interval: float = Field(default=60.0, ge=0)
    audit_tsa_url: str = ""

    #: the agency registry: each agency's id, name, sectors, source systems, mappings, organisations and
    #: whether it may record consent (docs/operations.md). Unset: every agency token is registered for
    #: every sector under its own subject, except with OIDC (production): then no agency is registered.
    agencies_file: Path | None = None

    session_key: SecretStr = SecretStr("")
    session_key_file: Path | None = None
    session_hours: float = Field(default=8.0, gt=0)
    session_secure_cookie: bool = True
    signin_link_minutes: float = Field(default=15.0, gt=0)

    max_body_bytes: int = 5 * 1024 * 1024
    #: None (auto): the API description is served only by the embedded demo; see :attr:`api_docs_open`
    api_docs: bool | None = None
    #: HUB_KAFKA_MAX_REQUEST_BYTES: the producer's largest request (aiokafka ``max_request_size``; keep it
    #: at or below the broker's ``message.max.bytes``). One record may be this less
    #: ``RECORD_HEADROOM`` (its envelope and batch framing); a larger one is refused with 413 before
    #: it is logged.
    kafka_max_request_bytes: int = Field(default=1024 * 1024, ge=128 * 1024)
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    #: OpenTelemetry (hub/core/tracing.py): spans are always made; `otlp` also sends them
    tracing_exporter: Literal["none", "otlp"] = "none"
    tracing_otlp_endpoint: str = ""
    tracing_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @cached_property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'hub.db'}"

    @property
    def owns_database(self) -> bool:
        """The hub's own SQLite file in its data directory (no HUB_DATABASE_URL): its processes migrate it
        themselves. A configured database is migrated only by `hub migrate`; everything else checks it."""
        return not self.database_url

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def api_docs_open(self) -> bool:
        """Whether ``/docs``, ``/redoc`` and ``/openapi.json`` are served (else they answer 404).

        HUB_API_DOCS when set; otherwise only on the embedded demo (`hub demo`, `hub up` with the
        embedded broker and the default SQLite database): production settings — an external Kafka
        in HUB_KAFKA_BOOTSTRAP or any HUB_DATABASE_URL — keep the API description closed.
        """
        if self.api_docs is not None:
            return self.api_docs
        return (self.embedded_broker or self.kafka_embedded) and not self.database_url

    @property
    def max_record_bytes(self) -> int:
        """The largest record (sealed value, key and headers) the ingest edge accepts."""
        return self.kafka_max_request_bytes - RECORD_HEADROOM

    @property
    def idempotent_producer(self) -> bool:
        if self.kafka_idempotence is not None:
            return self.kafka_idempotence
        return not (self.embedded_broker or self.kafka_embedded)

    @property
    def worker_delivers(self) -> bool:
        """Whether a stream worker delivers shares itself (every mode but `process`)."""
        return self.delivery_mode != "process"

    @property
    def stack_runs_deliverer(self) -> bool:
        """Whether `hub up` starts a `hub deliver` process (and tells its workers not to deliver)."""
        return self.delivery_mode != "worker"

    @property
    def rebalance_timeout(self) -> float:
        if self.worker_rebalance_timeout is not None:
            return self.worker_rebalance_timeout
        return 2.0 if (self.embedded_broker or self.kafka_embedded) else 60.0

    @property
    def fetch_wait_ms(self) -> int:
        if self.worker_fetch_wait_ms is not None:
            return self.worker_fetch_wait_ms
        return 20 if (self.embedded_broker or self.kafka_embedded) else 500

    @property
    def session_timeout(self) -> float:
        if self.worker_session_timeout is not None:
            return self.worker_session_timeout
        return 4.0 if (self.embedded_broker or self.kafka_embedded) else 60.0

    def kafka_client_options(self) -> dict[str, object]:
        """Security options in aiokafka's spelling, for every client the hub makes."""
        opts: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            opts.update(
                sasl_mechanism=self.kafka_sasl_mechanism or "PLAIN",
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.get_secret_value(),
            )
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            opts["ssl_context"] = create_ssl_context(
                cafile=self.kafka_ssl_cafile or None,
                certfile=self.kafka_ssl_certfile or None,
                keyfile=self.kafka_ssl_keyfile or None,
            )
        return opts


class SharingSettings(BaseSettings):
    """The sharing knobs (table above): validated, read from the environment each time they are used."""

    model_config = SettingsConfigDict(env_prefix="HUB_SHARING_", env_file=".env", extra="ignore")

    webhooks_file: Annotated[Path | None, Field(validation_alias="HUB_WEBHOOKS_FILE")] = None
    max_attempts: Annotated[int, Field(ge=1)] = 8
    retry_base: Annotated[float, Field(ge=0)] = 2.0
    ack_hours: Annotated[float, Field(ge=0)] = 72.0
    readiness_interval: Annotated[float, Field(ge=0)] = 300.0
    coordination_interval: Annotated[float, Field(ge=0)] = 60.0
    memo_records: Annotated[int, Field(ge=0)] = 10_000
    alert_rules_file: Annotated[Path | None, Field(validation_alias="HUB_ALERT_RULES_FILE")] = None
    statutory_nations: Annotated[str, Field(validation_alias="HUB_STATUTORY_NATIONS")] = ""
    statutory_warn_days: Annotated[int, Field(ge=0, validation_alias="HUB_STATUTORY_WARN_DAYS")] = 14
    alert_retention_days: Annotated[int, Field(ge=0, validation_alias="HUB_ALERT_RETENTION_DAYS")] = 365


def _sources_now() -> tuple[object, ...]:
    """What the sharing settings are read from, as it stands: the ``HUB_`` variables and the ``.env`` file."""
    try:
        st = os.stat(".env")
        env_file: object = (os.path.abspath(".env"), st.st_mtime_ns, st.st_size)
    except OSError:
        env_file = os.getcwd()
    return (env_file, *sorted((k, v) for k, v in os.environ.items() if k.startswith("HUB_")))


_last_read: tuple[tuple[object, ...], SharingSettings] | None = None


def sharing_settings() -> SharingSettings:
    """The sharing settings now; a bad value is a ConfigError naming the variable. Read again whenever a
    ``HUB_`` variable or the ``.env`` file changed since the last read (reading them is ~2 ms; the chores ask
    on every pass)."""
    from pydantic import ValidationError

    from hub.core.errors import ConfigError

    global _last_read
    sources = _sources_now()
    if _last_read is not None and _last_read[0] == sources:
        return _last_read[1]
    try:
        read = SharingSettings()
        _last_read = (sources, read)
        return read
    except ValidationError as exc:
        bad = "; ".join(f"HUB_SHARING_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
        for alias in ("HUB_ALERT_RULES_FILE", "HUB_STATUTORY_NATIONS", "HUB_STATUTORY_WARN_DAYS"):
            bad = bad.replace(f"HUB_SHARING_{alias}", alias)
        raise ConfigError(bad.replace("HUB_SHARING_HUB_WEBHOOKS_FILE", "HUB_WEBHOOKS_FILE")) from None


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def bootstrap_file(settings: Settings) -> Path:
    """Where a running `hub up` writes the address of its embedded broker for other commands."""
    return settings.data_dir / "run" / "bootstrap"


def running_bootstrap(settings: Settings) -> str:
    """The embedded broker of a running `hub up` on this data directory, or ""."""
    import socket

    path = bootstrap_file(settings)
    if not path.exists():
        return ""
    address = path.read_text().strip()
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return address
    except (OSError, ValueError):
        return ""
