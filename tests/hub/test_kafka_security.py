"""Kafka security settings reach every client in the spelling it needs: aiokafka keyword arguments
(publisher, topic admin, lag reader) and faust ``broker_credentials`` (the stream worker).

SASL is checked here as a mapping: the embedded broker can require SCRAM, but its users can only be
created by an already authenticated client and its storage is memory only, so there is no broker to
log in to in the test suite (TLS is tested end to end in test_kafka_tls.py).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from hub.core.settings import Settings
from hub.kafka.security import faust_credentials
from hub.kafka.topics import client_args
from hub.runtime.worker import create_app
from tests.tls_support import make_tls_files


def settings(tmp_path: Path, **kafka: Any) -> Settings:
    # the hub's own SQLite file in the data directory: the worker migrates it itself
    return Settings(kafka_bootstrap="kafka-1:9093", data_dir=tmp_path / "data", **kafka)


def same_options(faust_side: dict[str, Any], aiokafka_side: dict[str, Any]) -> None:
    """faust's client options equal the aiokafka ones (TLS contexts compared by what they verify)."""
    f_ctx, a_ctx = faust_side.pop("ssl_context", None), aiokafka_side.pop("ssl_context", None)
    assert (f_ctx is None) == (a_ctx is None)
    if f_ctx is not None:
        assert f_ctx.verify_mode == a_ctx.verify_mode == ssl.CERT_REQUIRED
        assert f_ctx.check_hostname and a_ctx.check_hostname
        assert f_ctx.get_ca_certs() == a_ctx.get_ca_certs()
    assert faust_side == aiokafka_side


def test_plaintext_needs_no_credentials(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert faust_credentials(s) is None
    assert client_args(s) == {"bootstrap_servers": "kafka-1:9093", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(("protocol", "mechanism"), [("SSL", ""), ("SASL_SSL", "SCRAM-SHA-512"),
                                                     ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "PLAIN"),
                                                     ("SASL_PLAINTEXT", "")])
def test_faust_and_aiokafka_get_the_same_security(tmp_path: Path, protocol: str, mechanism: str) -> None:
    tls = make_tls_files(tmp_path / "tls")
    s = settings(tmp_path, kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                 kafka_sasl_username="familyhub", kafka_sasl_password="s3cret-from-a-secret",
                 kafka_ssl_cafile=str(tls.ca), kafka_ssl_certfile=str(tls.client_cert),
                 kafka_ssl_keyfile=str(tls.client_key))
    creds = faust_credentials(s)
    assert creds is not None and "s3cret" not in repr(creds)
    same_options(dict(credentials_to_aiokafka_auth(creds)), s.kafka_client_options())
    if protocol.startswith("SASL"):
        assert isinstance(creds, faust.SASLCredentials)
        assert creds.mechanism.value == (mechanism or "PLAIN")
        assert (creds.username, creds.password) == ("familyhub", "s3cret-from-a-secret")
    else:
        assert isinstance(creds, faust.SSLCredentials)
    if "SSL" in protocol:
        assert tls.ca.read_bytes() and s.kafka_client_options()["ssl_context"].get_ca_certs()


def test_the_worker_app_and_the_aiokafka_clients_use_the_settings(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    s = settings(tmp_path, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="familyhub", kafka_sasl_password="pw", kafka_ssl_cafile=str(tls.ca))
    app = create_app(s, worker_id="w-test")
    creds = app.conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials) and creds.ssl_context is not None
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    args = client_args(s)  # what the publisher, topic admin and lag reader are built with
    assert args["security_protocol"] == "SASL_SSL" and args["sasl_plain_username"] == "familyhub"
