"""The Kafka clusters the scenarios run on: an embedded broker of their own, or Apache Kafka.

Apache Kafka is, in order of preference, an existing cluster named by ``HUB_TEST_KAFKA_BOOTSTRAP``
(with ``HUB_TEST_SCHEMA_REGISTRY_URL`` for its registry, if any, and ``HUB_TEST_TOPIC_REPLICATION_FACTOR``
/ ``HUB_TEST_TOPIC_MIN_INSYNC_REPLICAS`` for the topics the hub creates there), or one started here with
testcontainers: Kafka in KRaft mode (one node, broker and controller) and a Confluent schema
registry on a shared Docker network. Where no Docker engine answers, the probe says so once per
session and every test on that cluster is skipped with that reason.
"""

from __future__ import annotations

import functools
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import hub_env

KAFKA_IMAGE = "confluentinc/cp-kafka:7.7.1"
REGISTRY_IMAGE = "confluentinc/cp-schema-registry:7.7.1"  # the registry deploy/compose.yaml runs
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
EXISTING_BOOTSTRAP = "HUB_TEST_KAFKA_BOOTSTRAP"
EXISTING_REGISTRY = "HUB_TEST_SCHEMA_REGISTRY_URL"
EXISTING_REPLICATION = "HUB_TEST_TOPIC_REPLICATION_FACTOR"
EXISTING_MIN_INSYNC = "HUB_TEST_TOPIC_MIN_INSYNC_REPLICAS"


@dataclass(frozen=True)
class Cluster:
    """What a scenario needs to run the hub against one cluster."""

    name: str
    bootstrap: str
    registry_url: str | None = None
    embedded: bool = False
    replication_factor: int = 1  # of the topics the hub creates
    min_insync_replicas: int = 1

    def hub_env(self, data_dir: Path, api_port: int, **extra: Any) -> dict[str, str]:
        """Environment for `hub up` on this cluster with its own data directory (and SQLite database)."""
        settings: dict[str, Any] = {"kafka_bootstrap": self.bootstrap, "data_dir": data_dir, "api_port": api_port,
                                    "topic_replication_factor": self.replication_factor,
                                    "topic_min_insync_replicas": self.min_insync_replicas}
        if self.embedded:
            settings["kafka_embedded"] = "true"  # no idempotent producer, short group joins (tansu)
        if self.registry_url:
            settings["schema_registry_url"] = self.registry_url  # Confluent wire format
        return hub_env(**settings, **extra)


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def probe_docker(timeout: float = 5) -> str | None:
    """None when a Docker engine answers a ping, else the reason to skip (fails fast without a socket)."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # DockerException, ConnectionError, FileNotFoundError, ...
        return f"no Docker engine answers at {docker_host()} ({type(exc).__name__}: {str(exc)[:120]})"
    return None


@functools.cache
def docker_unavailable() -> str | None:
    """:func:`probe_docker`, asked once per test session."""
    return probe_docker()


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(1)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def _kafka_container_class() -> Any:
    try:
        from testcontainers.community.kafka import KafkaContainer  # testcontainers >= 4.14
    except ImportError:
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer


@contextmanager
def kafka_in_containers() -> Iterator[Cluster]:
    """Apache Kafka (KRaft, one node) and a schema registry in containers, for as long as the block runs.

    One node, so every topic has one replica: the hub is told ``HUB_TOPIC_REPLICATION_FACTOR=1`` and
    the broker's own internal topics (offsets, transaction state) are set to one replica too.
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    with Network() as network:
        kafka = (_kafka_container_class()(KAFKA_IMAGE).with_kraft().with_network(network)
                 .with_network_aliases("kafka")
                 .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
                 .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"))
        try:
            kafka.start(timeout=180)  # until the broker logs it started (slow runners too)
            registry = (
                DockerContainer(REGISTRY_IMAGE)
                .with_network(network)
                .with_network_aliases("schema-registry")
                .with_env("SCHEMA_REGISTRY_HOST_NAME", "schema-registry")
                .with_env("SCHEMA_REGISTRY_LISTENERS", "http://0.0.0.0:8081")
                .with_env("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "PLAINTEXT://kafka:9092")
                .with_env("SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR", "1")
                .with_env("SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL", "full_transitive")
                .with_exposed_ports(8081)
            )
            with registry:
                url = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(8081)}"
                wait_http(url + "/subjects", timeout=120)
                yield Cluster("kafka", kafka.get_bootstrap_server(), url)
        finally:
            kafka.stop()


def existing_kafka() -> Cluster | None:
    """The cluster named by ``HUB_TEST_KAFKA_BOOTSTRAP``, if set (replicas from ``HUB_TEST_TOPIC_*``)."""
    bootstrap = os.environ.get(EXISTING_BOOTSTRAP, "").strip()
    if not bootstrap:
        return None
    return Cluster("kafka", bootstrap, os.environ.get(EXISTING_REGISTRY, "").strip() or None,
                   replication_factor=int(os.environ.get(EXISTING_REPLICATION) or 1),
                   min_insync_replicas=int(os.environ.get(EXISTING_MIN_INSYNC) or 1))
