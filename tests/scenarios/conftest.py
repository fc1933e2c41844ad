"""Fixtures for the scenario suite: every scenario runs on each cluster, against a real `hub up`.

``cluster`` has two params: ``embedded`` (a tansu broker of the suite's own) and ``kafka`` (Apache Kafka:
``HUB_TEST_KAFKA_BOOTSTRAP`` if set, else KRaft Kafka and a schema registry in containers, skipped
with the reason where no Docker engine answers; there ``HUB_SCHEMA_REGISTRY_URL`` is set, so every
accepted event is written in the Confluent wire format with its schema registered). ``hub`` is one
`hub up` per cluster for the whole suite, with a fresh data directory and database: each scenario
enrols households and identifiers of its own, and the restart scenario stops and starts it.

Topic names are the hub's catalogue and its workers one consumer group, so two hubs must not run
on one cluster at once: the suite runs one, and a hub started on the cluster later resumes from the
offsets it committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from hub.kafka.broker import EmbeddedBroker
from tests.scenarios.cluster import Cluster, docker_unavailable, existing_kafka, kafka_in_containers
from tests.scenarios.running import PAEDIATRICS_SECRET, AgencyEndpoint, RunningHub


def _kafka_param() -> object:
    """The ``kafka`` param, marked skipped (with the reason) where there is no Kafka to run on: a skip mark acts
    before any fixture is set up, so the embedded cluster and its hub are not stopped and started again around
    each file's skipped tests (a skip inside the fixture would do that, about 30 s a file). ``docker_unavailable``
    is asked once a process, so the fixture finds what the mark was made from."""
    reason = None if existing_kafka() is not None else docker_unavailable()
    marks = [pytest.mark.docker] + ([pytest.mark.skip(reason=reason)] if reason else [])
    return pytest.param("kafka", marks=marks)


@pytest.fixture(scope="session", params=["embedded", _kafka_param()])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if request.param == "embedded":
        # a broker of the suite's own: other tests' workers share the session broker's topics and group
        broker = EmbeddedBroker().start()
        try:
            yield Cluster("embedded", broker.bootstrap, embedded=True)
        finally:
            broker.stop()
        return
    existing = existing_kafka()
    if existing is not None:
        yield existing
        return
    with kafka_in_containers() as containers:  # no Docker engine: skipped by the param's mark, never reached
        yield containers


# session-scoped like the cluster: the test processes take files of other packages in between, and a
# package-scoped hub started again on the same broker would meet the first one's signed checkpoints
@pytest.fixture(scope="session")
def paediatrics_webhook() -> Iterator[AgencyEndpoint]:
    """Aneurin Bevan's (7A6) webhook, where community paediatrics receives shares."""
    endpoint = AgencyEndpoint(PAEDIATRICS_SECRET)
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="session")
def hub(cluster: Cluster, paediatrics_webhook: AgencyEndpoint,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    running = RunningHub(cluster, tmp_path_factory.mktemp(f"hub-{cluster.name}"), {"7A6": paediatrics_webhook})
    running.start()
    yield running
    if running.proc is not None:
        with contextlib.suppress(Exception):
            running.stop()
