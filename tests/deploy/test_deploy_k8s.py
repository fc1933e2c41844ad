"""deploy/k8s: every object validates against the Kubernetes API schemas, offline.

Core kinds: `kubernetes-validate` (PyPI), which ships the Kubernetes OpenAPI-derived JSON schemas
inside the wheel, in strict mode (unknown fields rejected). ServiceMonitor is a CRD, not in those
schemas: it is validated against tests/deploy/servicemonitor.schema.json, a subset vendored from
the prometheus-operator CRD. Then the cross-object wiring and the security policy.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ._support import (
    K8S,
    K8S_VERSION,
    SERVICEMONITOR_SCHEMA,
    dump_all_yaml,
    k8s_documents,
    k8s_manifest_files,
    load_yaml,
    probe_problems,
    topology_problems,
    venv_tool,
    workload_problems,
)

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) is needed to validate deploy/k8s"
)

DOCS = k8s_documents()
#: Kinds from CRDs, validated against a vendored schema (whatever apiVersion a manifest claims).
CRD_SCHEMAS = {"ServiceMonitor": SERVICEMONITOR_SCHEMA}


def validate_k8s(doc: dict[str, Any]) -> None:
    """Raise if `doc` is not a valid object: core schemas (strict) or a vendored CRD schema."""
    if doc.get("kind") in CRD_SCHEMAS:
        schema = json.loads(CRD_SCHEMAS[doc["kind"]].read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft202012Validator(schema).validate(doc)
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _ids(items):
    return [label for label, _ in items]


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(("label", "doc"), DOCS, ids=_ids(DOCS))
def test_manifest_validates_against_kubernetes_schemas(label: str, doc: dict[str, Any]) -> None:
    validate_k8s(doc)


def test_every_kind_is_covered_by_a_schema() -> None:
    """No object slips through as 'schema not found' (kubernetes-validate only warns on those)."""
    for label, doc in DOCS:
        if doc["kind"] in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:  # pragma: no cover - failure path
            pytest.fail(f"{label}: {e.message}")


def test_expected_objects_are_present() -> None:
    kinds = {doc["kind"] for _, doc in DOCS}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "StatefulSet",
        "Service",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "ServiceMonitor",
    } <= kinds


def _doc(kind: str, name_suffix: str = "") -> dict[str, Any]:
    for _, doc in DOCS:
        if doc["kind"] == kind and doc["metadata"]["name"].endswith(name_suffix):
            return copy.deepcopy(doc)
    raise LookupError(kind)


def _typo_field(d):
    d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = d["spec"]["template"]["spec"][
        "containers"
    ][0].pop("readinessProbe")


def _port_as_text(d):
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"


def _no_containers(d):
    del d["spec"]["template"]["spec"]["containers"]


def _bad_claim(d):
    d["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] = "ReadWriteOnce"


@pytest.mark.parametrize("breakage", [_typo_field, _port_as_text, _no_containers, _bad_claim])
def test_kubernetes_validation_rejects_a_broken_worker(breakage) -> None:
    doc = _doc("StatefulSet", "worker")
    breakage(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(doc)


def test_kubernetes_validation_rejects_a_broken_pdb_and_job() -> None:
    pdb = _doc("PodDisruptionBudget")
    pdb["spec"]["maxUnavailable"] = [1]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(pdb)
    job = _doc("Job")
    job["spec"]["template"]["spec"]["restartPolicy"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(job)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds"),
        lambda d: d["spec"]["endpoints"][0].update(scheme="tcp"),
        lambda d: d["spec"].update(endpoint=d["spec"].pop("endpoints")),
        lambda d: d["spec"].pop("selector"),
        lambda d: d.update(apiVersion="monitoring.coreos.com/v1alpha1"),
    ],
)
def test_servicemonitor_schema_rejects_a_broken_monitor(breakage) -> None:
    doc = _doc("ServiceMonitor")
    breakage(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate_k8s(doc)


def test_validation_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """kubernetes-validate reads the schemas shipped in its wheel: block sockets and validate again."""

    def no_network(*args, **kwargs):
        raise AssertionError("validation tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for _, doc in DOCS:
        validate_k8s(doc)


def test_cli_validates_every_file_in_strict_mode() -> None:
    """The same check a developer runs by hand: `kubernetes-validate --strict deploy/k8s/*.yaml`."""
    tool = venv_tool("kubernetes-validate")
    assert tool is not None
    files = [str(p) for p in k8s_manifest_files()]
    result = subprocess.run(
        [tool, "--strict", "-k", K8S_VERSION, "--quiet", *files], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout


def test_cli_rejects_a_broken_file(tmp_path: Path) -> None:
    doc = _doc("Deployment", "api")
    doc["spec"]["replicas"] = "two"
    bad = dump_all_yaml([doc], tmp_path / "api.yaml")
    tool = venv_tool("kubernetes-validate")
    assert tool is not None
    result = subprocess.run([tool, "--strict", "-k", K8S_VERSION, str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ERROR" in result.stdout


# --------------------------------------------------------------------------- kustomization


def test_kustomization_lists_every_manifest() -> None:
    kust = load_yaml(K8S / "kustomization.yaml")
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kust["kind"] == "Kustomization"
    listed = set(kust["resources"])
    on_disk = {p.name for p in k8s_manifest_files()}
    assert listed == on_disk, f"not listed: {on_disk - listed}; missing: {listed - on_disk}"
    assert kust["namespace"] == "familyhub"


# --------------------------------------------------------------------------- policy and wiring


@pytest.mark.parametrize(("label", "doc"), DOCS, ids=_ids(DOCS))
def test_workloads_are_locked_down_with_resources(label: str, doc: dict[str, Any]) -> None:
    assert workload_problems(doc) == []
    assert probe_problems(doc) == []


def test_policy_check_catches_a_root_writable_unbounded_container() -> None:
    doc = _doc("Deployment", "connectors")
    doc["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")
    c = doc["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"] = {"readOnlyRootFilesystem": False}
    c["resources"] = {"requests": {"cpu": "100m"}}
    c["image"] = "familyhub/hub"
    problems = workload_problems(doc)
    for expect in (
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "limits.memory",
        "no tag",
    ):
        assert any(expect in p for p in problems), (expect, problems)


def test_probe_check_catches_wrong_paths() -> None:
    doc = _doc("Deployment", "api")
    c = doc["spec"]["template"]["spec"]["containers"][0]
    c["readinessProbe"]["httpGet"]["path"] = "/healthz"
    del c["livenessProbe"]
    problems = probe_problems(doc)
    assert any("readinessProbe path '/healthz'" in p for p in problems)
    assert any("livenessProbe path None" in p for p in problems)


def test_objects_are_wired_together() -> None:
    assert topology_problems([doc for _, doc in DOCS]) == []


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (
            lambda ds: _find(ds, "StatefulSet")["spec"].pop("volumeClaimTemplates"),
            "not on a volumeClaimTemplate",
        ),
        (
            lambda ds: _find(ds, "StatefulSet").update(
                spec={**_find(ds, "StatefulSet")["spec"], "serviceName": "x"}
            ),
            "not a headless Service",
        ),
        (lambda ds: _find(ds, "Secret")["stringData"].pop("database-url"), "missing secret key"),
        (
            lambda ds: _find(ds, "ServiceMonitor")["spec"]["endpoints"][0].update(port="metrics"),
            "port 'metrics' not on Service",
        ),
        (
            lambda ds: _find(ds, "ServiceMonitor")["spec"]["selector"]["matchLabels"].update(x="y"),
            "selects no Service",
        ),
        (lambda ds: _find(ds, "ServiceMonitor")["spec"]["endpoints"][0].pop("authorization"),
         "scrapes /metrics without a bearer token"),
        (lambda ds: _find(ds, "Secret")["stringData"].pop("metrics-token"), "token wants missing secret key"),
        (lambda ds: _find(ds, "ConfigMap")["data"].update(HUB_TYPO="1"), "HUB_TYPO is not a hub setting"),
        (lambda ds: _drop(ds, "PodDisruptionBudget"), "worker: no PodDisruptionBudget"),
    ],
)
def test_wiring_check_catches_breakage(mutate, expect) -> None:
    docs = copy.deepcopy([doc for _, doc in DOCS])
    mutate(docs)
    problems = topology_problems(docs)
    assert any(expect in p for p in problems), problems


def _find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def _drop(docs: list[dict[str, Any]], kind: str) -> None:
    docs[:] = [d for d in docs if d["kind"] != kind]


def test_secret_holds_only_documented_placeholders() -> None:
    secret = _doc("Secret")
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, (
            f"{key} looks like a real secret; the repository carries placeholders only"
        )


def test_worker_runs_rocksdb_with_exactly_once_and_a_matching_partition_count() -> None:
    cm = _doc("ConfigMap")["data"]
    sts = _doc("StatefulSet", "worker")
    assert cm["HUB_PROCESSING_GUARANTEE"] == "exactly_once"
    assert cm["HUB_TOPIC_REPLICATION_FACTOR"] == "3"
    assert cm["HUB_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    assert sts["spec"]["replicas"] <= int(cm["HUB_TOPIC_PARTITIONS"]), "workers beyond partitions sit idle"
    assert sts["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    job = _doc("Job", "migrate")["spec"]["template"]["spec"]
    assert [c["args"] for c in job["initContainers"]] == [["migrate"]]
    assert [c["args"] for c in job["containers"]] == [["topics", "--create"]]
