"""The OpenAPI document tells a client how to authenticate and what every answer looks like."""

from __future__ import annotations

from typing import Any

import pytest

from hub.api.app import create_app
from hub.governance.auth import PUBLIC, policy_for
from hub.ingest.services import Services

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def document(services: Services) -> dict[str, Any]:
    return create_app(services).openapi()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items() if m in METHODS]


def test_every_protected_operation_requires_the_bearer_scheme(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    ops = operations(document)
    assert len(ops) > 40
    for method, path, op in ops:
        public = policy_for(method.upper(), path) is PUBLIC
        assert ("security" not in op) == public, (method, path)
        if not public:
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            for status in ("401", "403"):
                content = op["responses"][status]["content"]
                if path.startswith("/fhir"):  # FHIR routes answer errors as an OperationOutcome
                    assert "application/fhir+json" in content, (method, path, status)
                else:
                    assert content["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/ProblemDocument"}, (method, path, status)
    # the probes stay open to an orchestrator without a token
    # the probes, and the FHIR CapabilityStatement, which a FHIR client reads before it has a token
    assert {p for m, p, op in ops if "security" not in op} == {"/healthz", "/readyz", "/fhir/metadata"}


def test_every_operation_documents_a_typed_answer_and_its_problems(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert ok, (method, path)
        for code, response in ok.items():
            if code == "204":
                assert not response.get("content"), (method, path)
                continue
            schemas = [body.get("schema") for body in (response.get("content") or {}).values()]
            assert schemas and all(schemas), f"{method.upper()} {path} {code}: no response schema"
        if "422" in op["responses"] and not path.startswith("/fhir"):  # a problem document, not FastAPI's shape
            assert "application/problem+json" in op["responses"]["422"]["content"], (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    ingest = document["paths"]["/v1/ingest/education"]["post"]["responses"]
    assert {"200", "207", "413", "422", "503"} <= set(ingest)
    assert ingest["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchSummary"}


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    import json
    import re

    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs and refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])
