"""deploy/k8s: every overlay renders with `kubectl kustomize` and every object validates against the
Kubernetes API schemas, offline.

Core kinds: `kubernetes-validate` (PyPI), which ships the Kubernetes OpenAPI-derived JSON schemas
inside the wheel, in strict mode (unknown fields rejected). ServiceMonitor is a CRD, not in those
schemas: it is validated against tests/deploy/servicemonitor.schema.json, a subset vendored from
the prometheus-operator CRD. Then the cross-object wiring and the security policy.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hub.core.settings import Settings

from ._support import (
    K8S,
    K8S_VERSION,
    OVERLAYS,
    REPO,
    SERVICEMONITOR_SCHEMA,
    documented_configmaps,
    documented_secrets,
    dump_all_yaml,
    k8s_checkpoint_key_problems,
    k8s_documents,
    k8s_manifest_files,
    k8s_settings_problems,
    load_yaml,
    probe_problems,
    topology_problems,
    venv_tool,
    workload_problems,
)

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) is needed to validate deploy/k8s"
)
if shutil.which("kubectl") is None:
    pytest.skip("kubectl is needed to render deploy/k8s (`kubectl kustomize`)", allow_module_level=True)

DOCS = k8s_documents("production")
EVERY_OVERLAY = [item for overlay in OVERLAYS for item in k8s_documents(overlay)]
SECRETS = documented_secrets()
CONFIGMAPS = documented_configmaps()
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


def test_there_are_production_and_staging_overlays() -> None:
    assert set(OVERLAYS) == {"production", "staging"}


@pytest.mark.parametrize(("label", "doc"), EVERY_OVERLAY, ids=_ids(EVERY_OVERLAY))
def test_every_rendered_object_validates_against_kubernetes_schemas(label: str, doc: dict[str, Any]) -> None:
    validate_k8s(doc)


def test_every_kind_is_covered_by_a_schema() -> None:
    """No object slips through as 'schema not found' (kubernetes-validate only warns on those)."""
    for label, doc in EVERY_OVERLAY:
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
        "Service",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PersistentVolumeClaim",  # the audit checkpoints file, the deliverer's alone
    } <= kinds
    assert not kinds & {"StatefulSet", "Secret"}, kinds


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


def _bad_strategy(d):
    d["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = [0]


@pytest.mark.parametrize("breakage", [_typo_field, _port_as_text, _no_containers, _bad_strategy])
def test_kubernetes_validation_rejects_a_broken_worker(breakage) -> None:
    doc = _doc("Deployment", "worker")
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
    for _, doc in EVERY_OVERLAY:
        validate_k8s(doc)


def test_cli_validates_every_rendered_overlay_in_strict_mode(tmp_path: Path) -> None:
    """The check a developer runs by hand: `kubectl kustomize deploy/k8s/overlays/X > x.yaml` and then
    `kubernetes-validate --strict x.yaml` (the ServiceMonitor, a CRD, is checked above)."""
    tool = venv_tool("kubernetes-validate")
    assert tool is not None
    files = [str(dump_all_yaml([d for _, d in k8s_documents(o) if d["kind"] not in CRD_SCHEMAS],
                               tmp_path / f"{o}.yaml")) for o in OVERLAYS]
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


def test_every_manifest_is_listed_by_its_kustomization() -> None:
    for folder in {p.parent for p in k8s_manifest_files()}:
        kust = load_yaml(folder / "kustomization.yaml")
        assert (kust["apiVersion"], kust["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
        listed = {r for r in kust["resources"] if not r.startswith("..")}
        on_disk = {p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
        assert listed == on_disk, f"{folder}: not listed: {on_disk - listed}; missing: {listed - on_disk}"
    assert load_yaml(K8S / "base" / "kustomization.yaml")["namespace"] == "familyhub"
    for overlay in OVERLAYS:
        assert "../../base" in load_yaml(K8S / "overlays" / overlay / "kustomization.yaml")["resources"]


# --------------------------------------------------------------------------- policy and wiring


@pytest.mark.parametrize(("label", "doc"), EVERY_OVERLAY, ids=_ids(EVERY_OVERLAY))
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
    for overlay in OVERLAYS:
        assert topology_problems([doc for _, doc in k8s_documents(overlay)], SECRETS, CONFIGMAPS) == [], overlay


def _without(key: str) -> dict[str, set[str]]:
    return {name: keys - {key} for name, keys in SECRETS.items()}


def _find(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix))


def _drop(docs: list[dict[str, Any]], kind: str) -> None:
    docs[:] = [d for d in docs if d["kind"] != kind]


def _as_statefulset(docs: list[dict[str, Any]]) -> None:
    _find(docs, "Deployment", "worker")["kind"] = "StatefulSet"


def _container(docs: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    return _find(docs, "Deployment", suffix)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("mutate", "secrets", "expect"),
    [
        (_as_statefulset, SECRETS, "no worker Deployment"),
        (lambda ds: _container(ds, "worker")["env"].append({"name": "HUB_WORKER_STORE", "value": "rocksdb://"}),
         SECRETS, "it keeps no tables"),
        (lambda ds: None, _without("database-url"), "missing secret key familyhub-secrets/database-url"),
        (lambda ds: None, _without("payload-master-key"), "wants missing secret key payload-master-key"),
        (lambda ds: None, {}, "no Secret"),
        (
            lambda ds: _find(ds, "ServiceMonitor")["spec"]["endpoints"][0].update(port="metrics"),
            SECRETS,
            "port 'metrics' not on Service",
        ),
        (
            lambda ds: _find(ds, "ServiceMonitor")["spec"]["selector"]["matchLabels"].update(x="y"),
            SECRETS,
            "selects no Service",
        ),
        (lambda ds: _find(ds, "ServiceMonitor")["spec"]["endpoints"][0].pop("authorization"), SECRETS,
         "scrapes /metrics without a bearer token"),
        (lambda ds: _container(ds, "connectors").update(args=["deliver"]), SECRETS, "serve no /metrics"),
        (lambda ds: None, _without("metrics-token"), "token wants missing secret key"),
        (lambda ds: _find(ds, "ConfigMap")["data"].update(HUB_TYPO="1"), SECRETS, "HUB_TYPO is not a hub setting"),
        (lambda ds: _drop(ds, "PodDisruptionBudget"), SECRETS, "worker: no PodDisruptionBudget"),
    ],
)
def test_wiring_check_catches_breakage(mutate, secrets, expect) -> None:
    docs = copy.deepcopy([doc for _, doc in DOCS])
    mutate(docs)
    problems = topology_problems(docs, secrets, CONFIGMAPS)
    assert any(expect in p for p in problems), problems


def _claim_in(docs: list[dict[str, Any]], suffix: str) -> None:
    _find(docs, "Deployment", suffix)["spec"]["template"]["spec"]["volumes"].append(
        {"name": "audit-checkpoints", "persistentVolumeClaim": {"claimName": "familyhub-audit-checkpoints"}})


@pytest.mark.parametrize(("mutate", "configmaps", "expect"), [
    (lambda ds: _claim_in(ds, "api"), CONFIGMAPS, "only the checkpoint signer (the deliverer) may"),
    (lambda ds: _find(ds, "PersistentVolumeClaim")["metadata"].update(name="familyhub-state"), CONFIGMAPS,
     "undeclared claim familyhub-audit-checkpoints"),
    (lambda ds: None, {}, "wants missing ConfigMap key familyhub-audit-public-keys/audit-public-keys.pem"),
])
def test_wiring_check_catches_a_shared_claim_and_a_missing_configmap(mutate, configmaps, expect) -> None:
    docs = copy.deepcopy([doc for _, doc in DOCS])
    mutate(docs)
    problems = topology_problems(docs, SECRETS, configmaps)
    assert any(expect in p for p in problems), problems


def test_the_documented_secrets_hold_every_key_and_the_repository_none() -> None:
    """The operator creates the Secrets and the public keys ConfigMap from docs/operations.md; nothing in the
    repository could overwrite them with placeholders on `kubectl apply`. The checkpoint signing key is a
    Secret of its own, not a key of the Secret every pod reads."""
    assert SECRETS["familyhub-secrets"] == {
        "pseudonym-key", "jwt-key", "payload-master-key", "session-key", "kafka-ca.crt", "database-url",
        "kafka-sasl-password", "metrics-token", *REGISTRY_KEYS}
    assert SECRETS["familyhub-audit-signing-key"] == {"audit-signing-key"}
    assert {"familyhub-audit-public-keys": {"audit-public-keys.pem"}} == CONFIGMAPS
    for _, doc in EVERY_OVERLAY:
        assert doc["kind"] != "Secret", "secret values are created by the operator, not rendered"
        assert doc["metadata"]["name"] != "familyhub-audit-public-keys", "public keys are the operator's, too"


def _pod(suffix: str) -> dict[str, Any]:
    return _doc("Deployment", suffix)["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_signing_key_secret_is_referenced_only_by_the_signers_deployment(overlay: str) -> None:
    """The deliverer (`hub deliver`, the chores lease holder; the workers run in `process` mode) signs the
    audit checkpoints: the only object referencing Secret familyhub-audit-signing-key, the only pod with
    the checkpoint file's claim; the API, connectors and workers get the public keys file only."""
    docs = [doc for _, doc in k8s_documents(overlay)]
    assert k8s_checkpoint_key_problems(docs) == []
    referencing = {d["metadata"]["name"] for d in docs if "familyhub-audit-signing-key" in json.dumps(d)}
    assert referencing == {"familyhub-deliverer"}
    claimed = {d["metadata"]["name"] for d in docs
               if d["kind"] != "PersistentVolumeClaim" and "familyhub-audit-checkpoints" in json.dumps(d)}
    assert claimed == {"familyhub-deliverer"}
    cm = _doc("ConfigMap")["data"]
    assert "HUB_AUDIT_SIGNING_KEY_FILE" not in cm and "HUB_AUDIT_CHECKPOINT_FILE" not in cm
    deliverer = {e["name"]: e.get("value") for e in _pod("deliverer")["containers"][0]["env"]}
    assert deliverer["HUB_AUDIT_SIGNING_KEY_FILE"] == "/etc/familyhub/audit-signing/audit-signing-key"
    assert deliverer["HUB_AUDIT_CHECKPOINT_FILE"].startswith("/var/lib/hub-audit/")
    for suffix in ("api", "connectors", "worker"):
        pod = _pod(suffix)
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert "/etc/familyhub/audit-public-keys" in mounts, suffix
        assert cm["HUB_AUDIT_PUBLIC_KEYS_FILE"].startswith("/etc/familyhub/audit-public-keys/")
        assert "audit-signing" not in json.dumps(pod), suffix
        assert _pod(suffix)["containers"][0]["args"] != ["deliver"]


@pytest.mark.parametrize(("mutate", "expect"), [
    (lambda ds: _find(ds, "Deployment", "worker")["spec"]["template"]["spec"]["volumes"].append(
        {"name": "k", "secret": {"secretName": "familyhub-audit-signing-key"}}),
     "Deployment/familyhub-worker: references the checkpoint signing key"),
    (lambda ds: _find(ds, "Deployment", "api")["spec"]["template"]["spec"]["volumes"][-1]["secret"]["items"]
     .append({"key": "audit-signing-key", "path": "audit-signing-key"}), "from a Secret other pods read too"),
    (lambda ds: _claim_in(ds, "connectors"), "familyhub-connectors: mounts claim(s)"),
    (lambda ds: _find(ds, "Deployment", "deliverer")["spec"]["template"]["spec"].update(
        volumes=[v for v in _find(ds, "Deployment", "deliverer")["spec"]["template"]["spec"]["volumes"]
                 if v["name"] != "audit-signing"]), "the signer has no signing key"),
    (lambda ds: _find(ds, "Deployment", "api")["spec"]["template"]["spec"].update(
        volumes=[v for v in _find(ds, "Deployment", "api")["spec"]["template"]["spec"]["volumes"]
                 if v["name"] != "audit-public-keys"]), "familyhub-api: no audit public keys"),
])
def test_checkpoint_key_check_catches_breakage(mutate, expect) -> None:
    docs = copy.deepcopy([doc for _, doc in DOCS])
    mutate(docs)
    problems = k8s_checkpoint_key_problems(docs)
    assert any(expect in p for p in problems), problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_the_settings_its_process_needs(overlay: str) -> None:
    """Compared with hub/core/settings.py: ConfigMap and env give each process what it reads in production,
    every key file is on a mounted volume, and the signer's settings are the deliverer's only."""
    assert k8s_settings_problems([doc for _, doc in k8s_documents(overlay)]) == []


@pytest.mark.parametrize(("mutate", "expect"), [
    (lambda ds: _find(ds, "ConfigMap")["data"].pop("HUB_SESSION_KEY_FILE"), "api/api: HUB_SESSION_KEY_FILE not set"),
    (lambda ds: _find(ds, "ConfigMap")["data"].update(HUB_AUDIT_CHECKPOINT_FILE="/var/lib/hub/c.jsonl"),
     "familyhub-worker/worker: HUB_AUDIT_CHECKPOINT_FILE set for `hub worker`"),
    (lambda ds: _container(ds, "api").update(volumeMounts=[m for m in _container(ds, "api")["volumeMounts"]
                                                           if m["name"] != "secrets"]),
     "HUB_SESSION_KEY_FILE /etc/familyhub/secrets/session-key is on no mounted"),
])
def test_settings_check_catches_breakage(mutate, expect) -> None:
    docs = copy.deepcopy([doc for _, doc in DOCS])
    mutate(docs)
    problems = k8s_settings_problems(docs)
    assert any(expect in p for p in problems), problems


def test_the_operations_doc_says_how_the_checkpoint_key_is_held_as_deployed() -> None:
    """docs/operations.md, "How to hold the checkpoint key", names what the manifests and compose file use."""
    doc = (K8S.parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
    section = doc.split("### How to hold the checkpoint key", 1)[1].split("\n## ", 1)[0]
    deliverer = _pod("deliverer")
    key_mount = next(m["mountPath"] for m in deliverer["containers"][0]["volumeMounts"] if m["name"] == "audit-signing")
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in deliverer["volumes"] if "persistentVolumeClaim" in v)
    cm = _doc("ConfigMap")["data"]
    for needle in ("familyhub-audit-signing-key", "`familyhub-deliverer` only", key_mount, claim,
                   "familyhub-audit-public-keys", cm["HUB_AUDIT_PUBLIC_KEYS_FILE"], "audit_signing_key",
                   "`deliverer` service only", "audit-checkpoints", "audit_public_keys"):
        assert needle in section, needle


def test_worker_is_a_stateless_deployment_with_exactly_once_and_a_matching_partition_count() -> None:
    cm = _doc("ConfigMap")["data"]
    worker = _doc("Deployment", "worker")
    assert cm["HUB_PROCESSING_GUARANTEE"] == "exactly_once"
    assert cm["HUB_TOPIC_REPLICATION_FACTOR"] == "3"
    assert cm["HUB_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    assert worker["spec"]["replicas"] <= int(cm["HUB_TOPIC_PARTITIONS"]), "workers beyond partitions sit idle"
    pod = worker["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["worker"]
    assert all("persistentVolumeClaim" not in v for v in pod["volumes"]), "a worker keeps nothing on a volume"
    job = _doc("Job", "migrate")["spec"]["template"]["spec"]
    assert [c["args"] for c in job["initContainers"]] == [["migrate"]]
    assert [c["args"] for c in job["containers"]] == [["topics", "--create"]]
    # migrations run in the Job only: no long-running pod runs `hub migrate`
    for _, doc in DOCS:
        if doc["kind"] == "Deployment":
            assert all("migrate" not in (c.get("args") or []) for c in doc["spec"]["template"]["spec"]["containers"])


def test_the_api_autoscales_and_the_network_is_denied_by_default() -> None:
    hpa = _doc("HorizontalPodAutoscaler", "api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "familyhub-api"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    policies = [d for _, d in DOCS if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")
            and not p["spec"].get("egress")]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    admitted = [p for p in policies if p["spec"].get("ingress")]
    components = {v for p in admitted for e in p["spec"]["podSelector"].get("matchExpressions", [])
                  for v in e["values"]}
    assert components == {"api", "connectors"}, "only the HTTP processes take connections"


def test_the_metrics_credential_is_the_static_token_the_api_reads() -> None:
    endpoint = _doc("ServiceMonitor")["spec"]["endpoints"][0]
    key = endpoint["authorization"]["credentials"]["key"]
    for suffix in ("api", "connectors"):
        env = {e["name"]: e for e in _doc("Deployment", suffix)["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["HUB_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "familyhub-secrets", "key": key}


REGISTRY_KEYS = {"schema-registry-password", "schema-registry-ca.crt", "schema-registry-client.crt",
                 "schema-registry-client.key"}
REGISTRY_SETTINGS = {f"HUB_{name.upper()}" for name in Settings.model_fields if name.startswith("schema_registry_")}


def test_every_registry_setting_is_in_the_configmap_and_its_secret_keys_are_optional() -> None:
    """A registry with authentication or TLS needs only uncommenting: every HUB_SCHEMA_REGISTRY_* setting is in
    the ConfigMap (set, or commented with its value), and the registry's Secret keys are optional, so a
    cluster whose registry needs none of them starts without them."""
    assert {"HUB_SCHEMA_REGISTRY_URL", "HUB_SCHEMA_REGISTRY_CA_FILE"} <= REGISTRY_SETTINGS
    text = (REPO / "deploy" / "k8s" / "base" / "configmap.yaml").read_text()
    written = set(re.findall(r"^\s*#?\s*(HUB_SCHEMA_REGISTRY_\w+):", text, re.M))
    assert written | {"HUB_SCHEMA_REGISTRY_PASSWORD"} == REGISTRY_SETTINGS  # the password comes from the Secret
    for suffix in ("api", "connectors", "worker", "deliverer"):
        pod = _doc("Deployment", suffix)["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        ref = env["HUB_SCHEMA_REGISTRY_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "familyhub-secrets", "key": "schema-registry-password", "optional": True}, suffix
        (tls,) = [v for v in pod["volumes"] if v["name"] == "registry-tls"]
        assert tls["secret"]["optional"] is True
        assert {i["key"] for i in tls["secret"]["items"]} == REGISTRY_KEYS - {"schema-registry-password"}
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["registry-tls"] == "/etc/familyhub/registry"
        for setting in ("HUB_SCHEMA_REGISTRY_CA_FILE", "HUB_SCHEMA_REGISTRY_CERT_FILE", "HUB_SCHEMA_REGISTRY_KEY_FILE"):
            (line,) = [ln for ln in text.splitlines() if setting in ln]
            path = line.split(":", 1)[1].strip().strip('"')
            assert path.startswith("/etc/familyhub/registry/") and path.rsplit("/", 1)[1] in REGISTRY_KEYS


def test_tracing_and_registry_settings_are_documented_in_the_compose_file() -> None:
    text = (REPO / "deploy" / "compose.yaml").read_text()
    for setting in REGISTRY_SETTINGS - {"HUB_SCHEMA_REGISTRY_PASSWORD"} | {"HUB_TRACING_EXPORTER",
                                                                          "HUB_TRACING_OTLP_ENDPOINT"}:
        assert re.search(rf"^\s*#?\s*{setting}:", text, re.M), setting
    assert "HUB_SCHEMA_REGISTRY_PASSWORD=" in text  # exported from its secret file by the entrypoint
