"""Property-based requests (schemathesis) against the ingest routes' OpenAPI operations: never a 5xx.

Bounded and deterministic: a few examples per operation, a fixed derandomised run, in-process app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.python import asgi

from hub.api.app import create_app
from hub.core.settings import Settings
from hub.governance.auth import TokenService
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hub_app(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, database_url=f"sqlite:///{tmp / 'h.db'}",
                      data_dir=tmp / "data", schema_dir=ROOT / "schemas", pseudonym_key="k" * 32,
                      api_docs=True)  # type: ignore[arg-type]
    asyncio.run(ensure_topics(config))
    services = Services.build(config)
    app = create_app(services)
    token = TokenService(config).create("abuhb-pas", "agency", agency="7A6")
    with asgi.get_client(app) as client:  # runs the lifespan once: the publisher starts in the client's loop
        yield app, client, token
    services.store.engine.dispose()


def test_ingest_operations_never_answer_5xx(hub_app: tuple[Any, Any, str]) -> None:
    app, client, token = hub_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(tag="ingest")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/events", "/v1/ingest/health", "/fhir", "/fhir/{resource_type}"}
    for operation in operations:

        @settings(max_examples=8, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def no_5xx(case: Any) -> None:
            response = case.call(session=client, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code < 500, (f"{case.method} {case.path}: {response.status_code} "
                                                f"{response.text[:300]}")

        no_5xx()
