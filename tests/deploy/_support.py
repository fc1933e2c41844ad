"""Shared helpers for the deploy/ tests: paths, YAML loading and the policy checks.

Each ``*_problems`` function returns a list of human-readable problems (empty = fine), so a test
can assert both that the real files pass and that a deliberately broken copy is caught.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from hub.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
OPERATIONS_DOC = REPO / "docs" / "operations.md"
SERVICEMONITOR_SCHEMA = Path(__file__).with_name("servicemonitor.schema.json")

#: Kubernetes minor version the manifests must validate against (oldest one we support).
K8S_VERSION = "1.29.0"

#: The hub's settings, as the runtime contract lists them.
#: every HUB_* variable the hub reads (hub/core/settings.py is the one place they are declared)
HUB_SETTINGS = frozenset(f"HUB_{name.upper()}" for name in Settings.model_fields)

HUB_IMAGE_REPO = "familyhub/hub"


# --------------------------------------------------------------------------- loading


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def dump_yaml(data: Any, path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def dump_all_yaml(docs: Iterable[Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False), encoding="utf-8")
    return path


def k8s_manifest_files() -> list[Path]:
    """Every manifest of the kustomize base and overlays (not the kustomization files themselves)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


#: the kustomize overlays an operator renders (deploy/k8s/overlays/<name>)
OVERLAYS = tuple(sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml")))


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize deploy/k8s/overlays/<overlay>` renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise LookupError("kubectl is not installed")
    done = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed: {done.stderr}")
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def k8s_documents(overlay: str = "production") -> list[tuple[str, dict[str, Any]]]:
    """(label, document) for every object an overlay renders."""
    return [(f"{overlay}:{d.get('kind')}/{d.get('metadata', {}).get('name')}", d) for d in rendered(overlay)]


def documented_secrets(text: str | None = None, kind: str = "secret generic") -> dict[str, set[str]]:
    """Secret name to keys, from the `kubectl create secret generic` commands in docs/operations.md
    (``kind="configmap"``: the ConfigMaps the operator creates, from `kubectl create configmap`)."""
    text = text if text is not None else OPERATIONS_DOC.read_text(encoding="utf-8")
    found: dict[str, set[str]] = {}
    for m in re.finditer(rf"create {kind} (\S+)((?:[^\n]*\\\n)*[^\n]*)", text):
        found.setdefault(m[1], set()).update(re.findall(r"--from-(?:file|literal)=([\w.-]+)=", m[2]))
    return found


def documented_configmaps(text: str | None = None) -> dict[str, set[str]]:
    """ConfigMap name to keys, from the `kubectl create configmap` commands in docs/operations.md."""
    return documented_secrets(text, "configmap")


def venv_tool(name: str) -> str | None:
    """The console script `name` next to this interpreter (the venv's), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


# --------------------------------------------------------------------------- images


_IMAGE_RE = re.compile(
    r"^(?:(?P<registry>[a-z0-9.-]+(?::[0-9]+)?)/)?(?P<path>[a-z0-9._/-]+)(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def image_problem(image: Any) -> str | None:
    """Why `image` is not pinned (None when it is): a tag other than `latest`, or a digest."""
    if not isinstance(image, str) or not image:
        return f"image {image!r} is not a string"
    m = _IMAGE_RE.match(image)
    if m is None:
        return f"image {image!r} is not a valid reference"
    if m["digest"]:
        return None
    if not m["tag"]:
        return f"image {image!r} has no tag (means :latest)"
    if m["tag"].lower() == "latest":
        return f"image {image!r} uses the floating tag latest"
    return None


# --------------------------------------------------------------------------- compose


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command_text(service: dict[str, Any]) -> str:
    cmd = service.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def kafka_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose.get("services", {}).items()
        if str(svc.get("image", "")).split(":")[0] in ("apache/kafka", "apache/kafka-native")
    }


def kraft_problems(compose: dict[str, Any]) -> list[str]:
    """A three-node combined broker+controller KRaft quorum with production replication defaults."""
    problems: list[str] = []
    brokers = kafka_services(compose)
    if len(brokers) != 3:
        return [f"expected 3 apache/kafka brokers, found {len(brokers)}: {sorted(brokers)}"]
    node_ids: dict[str, str] = {}
    cluster_ids = set()
    voters_seen = set()
    for name, svc in brokers.items():
        env = _env(svc)
        if "zookeeper" in " ".join(env).lower():
            problems.append(f"{name}: ZooKeeper settings present (KRaft only)")
        roles = {r.strip() for r in env.get("KAFKA_PROCESS_ROLES", "").split(",")}
        if roles != {"broker", "controller"}:
            problems.append(f"{name}: KAFKA_PROCESS_ROLES={sorted(roles)}, want broker,controller")
        if not env.get("KAFKA_NODE_ID"):
            problems.append(f"{name}: no KAFKA_NODE_ID")
        node_ids[name] = env.get("KAFKA_NODE_ID", "")
        cluster_ids.add(env.get("CLUSTER_ID"))
        voters_seen.add(env.get("KAFKA_CONTROLLER_QUORUM_VOTERS"))
        ctl = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "")
        if not ctl or f"{ctl}://" not in env.get("KAFKA_LISTENERS", ""):
            problems.append(f"{name}: controller listener {ctl!r} not in KAFKA_LISTENERS")
        if not env.get("KAFKA_ADVERTISED_LISTENERS"):
            problems.append(f"{name}: no KAFKA_ADVERTISED_LISTENERS")
        wanted = {
            "KAFKA_DEFAULT_REPLICATION_FACTOR": "3",
            "KAFKA_MIN_INSYNC_REPLICAS": "2",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2",
        }
        for key, value in wanted.items():
            if env.get(key) != value:
                problems.append(f"{name}: {key}={env.get(key)!r}, want {value!r}")
    if len(set(node_ids.values())) != 3:
        problems.append(f"node ids not distinct: {node_ids}")
    if len(cluster_ids) != 1 or None in cluster_ids:
        problems.append(f"brokers disagree on CLUSTER_ID: {cluster_ids}")
    if len(voters_seen) != 1:
        problems.append(f"brokers disagree on KAFKA_CONTROLLER_QUORUM_VOTERS: {voters_seen}")
    else:
        voters = {}
        for voter in (voters_seen.pop() or "").split(","):
            node, _, hostport = voter.partition("@")
            voters[node.strip()] = hostport.rsplit(":", 1)[0]
        expected = {node_ids[n]: (brokers[n].get("hostname") or n) for n in brokers}
        if voters != expected:
            problems.append(f"quorum voters {voters} do not match the brokers {expected}")
    return problems


def init_problems(compose: dict[str, Any]) -> list[str]:
    """The one-shot init migrates and creates topics with RF 3 / min ISR 2, and gates the hub."""
    services = compose.get("services", {})
    init = services.get("init")
    if init is None:
        return ["no init service"]
    problems = []
    cmd = _command_text(init)
    for step in ("hub migrate", "hub topics --create"):
        if step not in cmd:
            problems.append(f"init does not run {step!r}: {cmd!r}")
    env = _env(init)
    if env.get("HUB_TOPIC_REPLICATION_FACTOR") != "3":
        problems.append(f"init HUB_TOPIC_REPLICATION_FACTOR={env.get('HUB_TOPIC_REPLICATION_FACTOR')!r}")
    if env.get("HUB_TOPIC_MIN_INSYNC_REPLICAS") != "2":
        problems.append(f"init HUB_TOPIC_MIN_INSYNC_REPLICAS={env.get('HUB_TOPIC_MIN_INSYNC_REPLICAS')!r}")
    if str(init.get("restart", "no")) != "no":
        problems.append("init is one-shot and must not restart")
    for name in ("api", "connectors", "worker"):
        dep = (services.get(name, {}).get("depends_on") or {}).get("init")
        if not isinstance(dep, dict) or dep.get("condition") != "service_completed_successfully":
            problems.append(f"{name} does not wait for init to complete successfully")
    for name in kafka_services(compose):
        dep = (init.get("depends_on") or {}).get(name)
        if not isinstance(dep, dict) or dep.get("condition") != "service_healthy":
            problems.append(f"init does not wait for broker {name} to be healthy")
    return problems


def long_running(services: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if str(s.get("restart", "no")) != "no"}


def compose_service_problems(compose: dict[str, Any]) -> list[str]:
    """Healthchecks, restart policies, depends_on conditions and pinned images on every service."""
    problems = []
    services = compose.get("services", {})
    for name in ("api", "connectors", "worker", "postgres", "schema-registry"):
        if name not in services:
            problems.append(f"service {name} missing")
    for name, svc in services.items():
        if name != "init" and str(svc.get("restart", "no")) == "no":
            problems.append(f"{name}: long-running service without a restart policy")
        if (p := image_problem(svc.get("image"))) is not None:
            problems.append(f"{name}: {p}")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{name}: depends_on without conditions")
        else:
            for dep, spec in deps.items():
                if not isinstance(spec, dict) or "condition" not in spec:
                    problems.append(f"{name}: depends_on {dep} without a condition")
                elif spec["condition"] == "service_healthy" and not services.get(dep, {}).get("healthcheck"):
                    problems.append(f"{name}: waits for {dep} to be healthy but {dep} has no healthcheck")
    for name, svc in long_running(services).items():
        hc = svc.get("healthcheck")
        if not isinstance(hc, dict) or hc.get("disable") or not hc.get("test"):
            problems.append(f"{name}: long-running service without a healthcheck")
        elif hc["test"] in (["NONE"], "NONE"):
            problems.append(f"{name}: healthcheck disabled with NONE")
    worker = services.get("worker", {})
    if not isinstance((worker.get("deploy") or {}).get("replicas"), int):
        problems.append("worker: deploy.replicas not set")
    if _env(worker).get("HUB_WORKER_STORE", "memory://") != "memory://":
        problems.append("worker: HUB_WORKER_STORE is set, but a worker keeps no tables")
    return problems


def compose_secret_problems(compose: dict[str, Any]) -> list[str]:
    """Keys and passwords come from compose secrets, never from plain environment values."""
    problems = []
    declared = set((compose.get("secrets") or {}).keys())
    for name, svc in compose.get("services", {}).items():
        env = _env(svc)
        mounted = {s if isinstance(s, str) else s.get("source") for s in svc.get("secrets") or []}
        for key, value in env.items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                secret = value.removeprefix("/run/secrets/")
                if secret not in declared or secret not in mounted:
                    problems.append(f"{name}: {key} points at secret {secret!r} that is not mounted")
            if key == "POSTGRES_PASSWORD" or key in ("HUB_KAFKA_SASL_PASSWORD", "HUB_DATABASE_URL"):
                problems.append(f"{name}: {key} set in plain environment; use a secret")
            if re.search(r"://[^/@\s:]+:[^/@\s]+@", value):
                problems.append(f"{name}: {key} holds credentials in a URL")
        if str(svc.get("image", "")).startswith(HUB_IMAGE_REPO):
            for key in ("HUB_PSEUDONYM_KEY_FILE", "HUB_JWT_KEY_FILE"):
                if not env.get(key, "").startswith("/run/secrets/"):
                    problems.append(f"{name}: {key} is not a mounted secret")
    return problems


# --------------------------------------------------------------------------- kubernetes


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return doc["spec"]
    return None


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def workload_problems(doc: dict[str, Any]) -> list[str]:
    """Non-root, read-only root fs, no privilege escalation, resources, pinned images."""
    spec = pod_spec(doc)
    if spec is None:
        return []
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    problems = []
    pod_sc = spec.get("securityContext") or {}
    for c in containers(spec):
        sc = c.get("securityContext") or {}
        where = f"{name}/{c.get('name')}"
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    problems.append(f"{where}: no resources.{part}.{r}")
        if (p := image_problem(c.get("image"))) is not None:
            problems.append(f"{where}: {p}")
    return problems


def probe_problems(doc: dict[str, Any]) -> list[str]:
    """Long-running hub pods: liveness on /healthz, readiness on /readyz, port 8080."""
    if doc.get("kind") not in ("Deployment", "StatefulSet"):
        return []
    problems = []
    for c in doc["spec"]["template"]["spec"]["containers"]:
        where = f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}"
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path:
                problems.append(f"{where}: {probe} path {get.get('path')!r}, want {path}")
            port = get.get("port")
            if ports.get(port, port) != 8080:
                problems.append(f"{where}: {probe} port {port!r} is not 8080")
    return problems


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def topology_problems(docs: list[dict[str, Any]], documented_secrets: dict[str, set[str]] | None = None,
                      documented_configmaps: dict[str, set[str]] | None = None) -> list[str]:
    """Cross-object wiring: names, selectors, secret and ConfigMap keys (of those in ``docs``, or documented: name
    to keys, those the operator creates), volumes and claims, the worker, what the ServiceMonitor scrapes."""
    problems: list[str] = []
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def one(kind: str) -> list[dict[str, Any]]:
        if not by_kind.get(kind):
            problems.append(f"no {kind}")
        return by_kind.get(kind, [])

    namespaces = {d["metadata"]["name"] for d in one("Namespace")}
    for d in docs:
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") not in namespaces:
            problems.append(f"{d['kind']}/{d['metadata']['name']}: namespace not declared")

    configmaps = {d["metadata"]["name"]: d for d in one("ConfigMap")}
    secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
    for cm in configmaps.values():
        for key in cm.get("data") or {}:
            if key not in HUB_SETTINGS:
                problems.append(f"ConfigMap key {key} is not a hub setting")
    configmap_keys = {n: set(cm.get("data") or {}) for n, cm in configmaps.items()}
    for name, keys in (documented_configmaps or {}).items():
        configmap_keys[name] = configmap_keys.get(name, set()) | keys
    claims_declared = {d["metadata"]["name"] for d in by_kind.get("PersistentVolumeClaim", [])}
    secret_keys = {n: set((s.get("stringData") or {}) | (s.get("data") or {})) for n, s in secrets.items()}
    for name, keys in (documented_secrets or {}).items():
        secret_keys[name] = secret_keys.get(name, set()) | keys
    if not secret_keys:
        problems.append("no Secret, in the manifests or documented")

    workloads = [d for d in docs if pod_spec(d) is not None]
    for d in workloads:
        spec = pod_spec(d)
        assert spec is not None
        name = f"{d['kind']}/{d['metadata']['name']}"
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        claims = {t["metadata"]["name"] for t in (d["spec"].get("volumeClaimTemplates") or [])}
        for v in volumes.values():
            sec = v.get("secret")
            if sec:
                for item in sec.get("items") or []:
                    if item["key"] not in secret_keys.get(sec["secretName"], set()):
                        problems.append(f"{name}: volume {v['name']} wants missing secret key {item['key']}")
            cmv = v.get("configMap")
            if cmv:
                for item in cmv.get("items") or []:
                    if item["key"] not in configmap_keys.get(cmv["name"], set()):
                        problems.append(f"{name}: volume {v['name']} wants missing ConfigMap key "
                                        f"{cmv['name']}/{item['key']}")
            pvc = v.get("persistentVolumeClaim")
            if pvc and pvc["claimName"] not in claims_declared:
                problems.append(f"{name}: volume {v['name']} wants undeclared claim {pvc['claimName']}")
        for c in containers(spec):
            for ef in c.get("envFrom") or []:
                ref = (ef.get("configMapRef") or {}).get("name")
                if ref and ref not in configmaps:
                    problems.append(f"{name}: envFrom unknown ConfigMap {ref}")
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["key"] not in secret_keys.get(ref["name"], set()):
                    problems.append(
                        f"{name}: env {e['name']} wants missing secret key {ref['name']}/{ref['key']}"
                    )
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes and m["name"] not in claims:
                    problems.append(f"{name}: mount {m['name']} has no volume")

    services = by_kind.get("Service", [])
    for s in services:
        sel = s["spec"].get("selector") or {}
        if not any(_labels_match(sel, w["spec"]["template"]["metadata"]["labels"]) for w in workloads):
            problems.append(f"Service/{s['metadata']['name']}: selector matches no pod template")

    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(_labels_match(sel, w["spec"]["template"]["metadata"]["labels"]) for w in workloads):
            problems.append(
                f"PodDisruptionBudget/{pdb['metadata']['name']}: selector matches no pod template"
            )

    # The worker: a Deployment with no state of its own (no faust tables, no claim), under a PDB.
    worker = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"].endswith("worker")]
    if not worker:
        problems.append("no worker Deployment")
    if by_kind.get("StatefulSet"):
        problems.append("a StatefulSet: no hub process keeps state of its own on a volume")
    # The one claim: the signed audit checkpoints file, mounted by the signer (the deliverer) alone.
    for claim in claims_declared:
        users = [w["metadata"]["name"] for w in workloads if any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in pod_spec(w).get("volumes") or [])]  # type: ignore[union-attr]
        if not claim.endswith("audit-checkpoints"):
            problems.append(f"claim {claim}: the only volume a hub process keeps is the audit checkpoints file")
        if any(not u.endswith("deliverer") for u in users) or not users:
            problems.append(f"claim {claim} is mounted by {users}: only the checkpoint signer (the deliverer) may")
    for w in worker:
        spec = w["spec"]
        c = spec["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env") or []}
        for cm in configmaps.values():
            env = {**(cm.get("data") or {}), **env}
        if env.get("HUB_WORKER_STORE", "memory://") != "memory://":
            problems.append(f"worker: HUB_WORKER_STORE {env.get('HUB_WORKER_STORE')!r}: it keeps no tables")
        if c.get("args") != ["worker"]:
            problems.append(f"worker: args {c.get('args')!r}, want ['worker']")
        if not any(
            _labels_match(p["spec"]["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
            for p in by_kind.get("PodDisruptionBudget", [])
        ):
            problems.append("worker: no PodDisruptionBudget")

    for kind_name in ("api", "connectors"):
        if not any(d["metadata"]["name"].endswith(kind_name) for d in by_kind.get("Deployment", [])):
            problems.append(f"no {kind_name} Deployment")
    if not any(d["metadata"]["name"].endswith("migrate") for d in by_kind.get("Job", [])):
        problems.append("no migrate Job")

    # The ServiceMonitor scrapes /metrics on a named port of Services it selects.
    monitors = by_kind.get("ServiceMonitor", [])  # production only (the Prometheus Operator CRDs)
    for sm in monitors:
        sel = sm["spec"]["selector"].get("matchLabels") or {}
        matched = [s for s in services if _labels_match(sel, s["metadata"].get("labels") or {})]
        if not matched:
            problems.append(f"ServiceMonitor/{sm['metadata']['name']}: selects no Service")
        for ep in sm["spec"].get("endpoints") or []:
            if ep.get("path") != "/metrics":
                problems.append(f"ServiceMonitor endpoint path {ep.get('path')!r} is not /metrics")
            creds = (ep.get("authorization") or {}).get("credentials") or {}
            if not creds:  # the hub's /metrics needs a bearer token with the monitor role
                problems.append("ServiceMonitor endpoint scrapes /metrics without a bearer token")
            elif creds.get("key") not in secret_keys.get(creds.get("name", ""), set()):
                problems.append(f"ServiceMonitor token wants missing secret key {creds.get('name')}/{creds.get('key')}")
            for s in matched:
                pods = [w for w in workloads if _labels_match(s["spec"].get("selector") or {},
                                                              w["spec"]["template"]["metadata"]["labels"])]
                if any(c.get("args") != ["api"] for w in pods for c in pod_spec(w)["containers"]):  # type: ignore[index]
                    problems.append(f"ServiceMonitor scrapes Service/{s['metadata']['name']}, whose pods serve no "
                                    "/metrics (only `hub api` does)")
                if ep.get("port") not in {p.get("name") for p in s["spec"]["ports"]}:
                    problems.append(
                        f"ServiceMonitor port {ep.get('port')!r} not on Service/{s['metadata']['name']}"
                    )
    return problems


# --------------------------------------------------------------------------- settings and the checkpoint key

#: the settings every long-running hub process needs in production, by process (beyond the database URL,
#: which comes from a secret); a ``*_FILE`` one must name a file the process has mounted
NEEDED_SETTINGS = {
    "all": frozenset({"HUB_KAFKA_BOOTSTRAP", "HUB_DATA_DIR", "HUB_DELIVERY_MODE", "HUB_PSEUDONYM_KEY_FILE",
                      "HUB_JWT_KEY_FILE", "HUB_PAYLOAD_MASTER_KEY_FILE", "HUB_AUDIT_PUBLIC_KEYS_FILE"}),
    "api": frozenset({"HUB_API_HOST", "HUB_API_PORT", "HUB_SESSION_KEY_FILE"}),
    "worker": frozenset({"HUB_PROBE_PORT", "HUB_PROCESSING_GUARANTEE"}),
    "deliver": frozenset({"HUB_PROBE_PORT", "HUB_AUDIT_SIGNING_KEY_FILE", "HUB_AUDIT_CHECKPOINT_FILE"}),
}
#: settings only the checkpoint signer (`hub deliver`, the chores lease holder) may have
SIGNER_ONLY = frozenset({"HUB_AUDIT_SIGNING_KEY_FILE", "HUB_AUDIT_CHECKPOINT_FILE"})


def _process(args: list[str] | str) -> str:
    """api, worker or deliver: which hub process a command or container args run."""
    words = args.split() if isinstance(args, str) else list(args)
    words = words[1:] if words[:1] == ["hub"] else words
    return words[0] if words else ""


def _under(path: str, mounts: Iterable[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def _settings_problems(where: str, process: str, env: dict[str, str], mounted: set[str]) -> list[str]:
    problems = []
    for key in sorted(NEEDED_SETTINGS["all"] | NEEDED_SETTINGS.get(process, frozenset())):
        if not env.get(key):
            problems.append(f"{where}: {key} not set")
    for key, value in sorted(env.items()):
        if key.startswith("HUB_") and key not in HUB_SETTINGS:
            problems.append(f"{where}: {key} is not a hub setting")
        if key in SIGNER_ONLY and process != "deliver":
            problems.append(f"{where}: {key} set for `hub {process}`; only the checkpoint signer may have it")
        needed = NEEDED_SETTINGS["all"] | NEEDED_SETTINGS.get(process, frozenset())
        if key.endswith(("_FILE", "_CAFILE")) and key in needed | {"HUB_KAFKA_SSL_CAFILE"} and value \
                and not _under(value, mounted):
            problems.append(f"{where}: {key} {value} is on no mounted secret, config or volume")
    return problems


def compose_settings_problems(compose: dict[str, Any]) -> list[str]:
    """Every long-running hub service has the settings its process needs, each file mounted; the signer's
    settings in the deliverer only."""
    problems: list[str] = []
    for name, svc in long_running(compose.get("services", {})).items():
        if not str(svc.get("image", "")).startswith(HUB_IMAGE_REPO):
            continue
        process = _process(svc.get("command") or [])
        mounted = {f"/run/secrets/{s if isinstance(s, str) else s.get('target') or s['source']}"
                   for s in svc.get("secrets") or []}
        mounted |= {(c.get("target") or f"/{c['source']}") if isinstance(c, dict) else f"/{c}"
                    for c in svc.get("configs") or []}
        mounted |= {str(v).split(":")[1] for v in svc.get("volumes") or [] if isinstance(v, str) and ":" in v}
        problems += _settings_problems(name, process, _env(svc), mounted)
    return problems


def compose_checkpoint_key_problems(compose: dict[str, Any]) -> list[str]:
    """The signing key secret and the checkpoint volume in the deliverer only; the public keys everywhere."""
    problems: list[str] = []
    for name, svc in compose.get("services", {}).items():
        secrets = {s if isinstance(s, str) else s.get("source") for s in svc.get("secrets") or []}
        volumes = {str(v).split(":")[0] for v in svc.get("volumes") or []}
        configs = {c if isinstance(c, str) else c.get("source") for c in svc.get("configs") or []}
        signer = _process(svc.get("command") or []) == "deliver"
        hub = str(svc.get("image", "")).startswith(HUB_IMAGE_REPO)
        if "audit_signing_key" in secrets and not signer:
            problems.append(f"{name}: mounts the checkpoint signing key; only the deliverer may")
        if "audit-checkpoints" in volumes and not signer:
            problems.append(f"{name}: mounts the checkpoint volume; only the deliverer may")
        if signer and not {"audit_signing_key"} <= secrets:
            problems.append(f"{name}: the signer has no signing key")
        if signer and "audit-checkpoints" not in volumes:
            problems.append(f"{name}: the signer's checkpoint file is on no volume of its own")
        if hub and "audit_public_keys" not in configs:
            problems.append(f"{name}: no audit public keys to verify checkpoints with")
    return problems


def _container_env(doc: dict[str, Any], c: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ef in c.get("envFrom") or []:
        env |= {k: str(v) for k, v in (configmaps.get((ef.get("configMapRef") or {}).get("name", "")) or {}).items()}
    for e in c.get("env") or []:
        env[e["name"]] = str(e.get("value", "<from a secret>"))
    return env


def k8s_settings_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every hub Deployment has the settings its process needs (ConfigMap and env), each file mounted."""
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    problems: list[str] = []
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            mounted = {m["mountPath"] for m in c.get("volumeMounts") or []}
            problems += _settings_problems(f"{d['metadata']['name']}/{c['name']}", _process(c.get("args") or []),
                                           _container_env(d, c, configmaps), mounted)
    return problems


def k8s_checkpoint_key_problems(docs: list[dict[str, Any]]) -> list[str]:
    """The signing-key Secret and the checkpoint claim referenced by the signer's Deployment only; the public
    keys ConfigMap mounted in every hub Deployment; the signing key in no Secret the others read."""
    problems: list[str] = []
    for d in docs:
        spec = pod_spec(d)
        if spec is None:
            continue
        name = f"{d['kind']}/{d['metadata']['name']}"
        signer = d["kind"] == "Deployment" and all(_process(c.get("args") or []) == "deliver"
                                                    for c in spec.get("containers") or [])
        secrets = {v["secret"]["secretName"]: {i["key"] for i in v["secret"].get("items") or []}
                   for v in spec.get("volumes") or [] if v.get("secret")}
        env_secrets = {(e.get("valueFrom") or {}).get("secretKeyRef", {}).get("key") for c in containers(spec)
                       for e in c.get("env") or []}
        claims = {(v.get("persistentVolumeClaim") or {}).get("claimName") for v in spec.get("volumes") or []} - {None}
        cms = {(v.get("configMap") or {}).get("name") for v in spec.get("volumes") or []} - {None}
        holds_key = "familyhub-audit-signing-key" in secrets or "audit-signing-key" in env_secrets or any(
            "audit-signing-key" in keys for n, keys in secrets.items() if n != "familyhub-audit-signing-key")
        if holds_key and not signer:
            problems.append(f"{name}: references the checkpoint signing key; only the signer (`hub deliver`) may")
        if any("audit-signing-key" in keys for n, keys in secrets.items() if n != "familyhub-audit-signing-key"):
            problems.append(f"{name}: the signing key comes from a Secret other pods read too")
        if claims and not signer:
            problems.append(f"{name}: mounts claim(s) {sorted(claims)}; only the signer keeps the checkpoint file")
        if signer and "familyhub-audit-signing-key" not in secrets:
            problems.append(f"{name}: the signer has no signing key")
        if signer and not any(c and c.endswith("audit-checkpoints") for c in claims):
            problems.append(f"{name}: the signer's checkpoint file is on no volume of its own")
        if d["kind"] == "Deployment" and "familyhub-audit-public-keys" not in cms:
            problems.append(f"{name}: no audit public keys to verify checkpoints with")
    return problems
