"""deploy/compose.yaml: valid Compose, a 3-node KRaft cluster, and the hub's production wiring.

Every check also runs on a deliberately broken copy, so a check that cannot fail would show here.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ._support import (
    COMPOSE,
    compose_checkpoint_key_problems,
    compose_secret_problems,
    compose_service_problems,
    compose_settings_problems,
    dump_yaml,
    init_problems,
    kafka_services,
    kraft_problems,
    load_yaml,
    venv_tool,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def run_compose_spec_check(path: Path) -> subprocess.CompletedProcess[str]:
    tool = venv_tool("check-jsonschema")
    if tool is None:
        pytest.fail("check-jsonschema is not installed (dev extra)")
    return subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --------------------------------------------------------------------------- compose-spec


def test_compose_file_validates_against_the_compose_spec() -> None:
    result = run_compose_spec_check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def _unknown_service_key(c: dict[str, Any]) -> None:
    c["services"]["api"]["imagee"] = c["services"]["api"].pop("image")


def _bad_depends_condition(c: dict[str, Any]) -> None:
    c["services"]["api"]["depends_on"]["init"]["condition"] = "service_finished"


def _bad_healthcheck_field(c: dict[str, Any]) -> None:
    c["services"]["kafka-1"]["healthcheck"]["retry"] = 3


def _replicas_not_a_number(c: dict[str, Any]) -> None:
    c["services"]["worker"]["deploy"]["replicas"] = {"count": 3}


@pytest.mark.parametrize(
    "breakage",
    [_unknown_service_key, _bad_depends_condition, _bad_healthcheck_field, _replicas_not_a_number],
)
def test_compose_spec_check_rejects_a_broken_copy(compose: dict[str, Any], tmp_path: Path, breakage) -> None:
    broken = copy.deepcopy(compose)
    breakage(broken)
    result = run_compose_spec_check(dump_yaml(broken, tmp_path / "compose.yaml"))
    assert result.returncode != 0, f"{breakage.__name__} was accepted:\n{result.stdout}"


# --------------------------------------------------------------------------- Kafka cluster


def test_three_kraft_brokers_with_production_replication(compose: dict[str, Any]) -> None:
    assert kraft_problems(compose) == []
    assert len(kafka_services(compose)) == 3


def test_kraft_check_catches_a_two_broker_cluster(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    del broken["services"]["kafka-3"]
    assert any("expected 3" in p for p in kraft_problems(broken))


def test_kraft_check_catches_weak_replication_and_a_wrong_quorum(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    env = broken["services"]["kafka-2"]["environment"]
    env["KAFKA_MIN_INSYNC_REPLICAS"] = "1"
    env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] = "1"
    env["KAFKA_CONTROLLER_QUORUM_VOTERS"] = "1@kafka-1:9093"
    problems = kraft_problems(broken)
    assert any("KAFKA_MIN_INSYNC_REPLICAS" in p for p in problems)
    assert any("TRANSACTION_STATE_LOG_REPLICATION_FACTOR" in p for p in problems)
    assert any("QUORUM_VOTERS" in p for p in problems)


def test_brokers_do_not_auto_create_topics(compose: dict[str, Any]) -> None:
    for name, svc in kafka_services(compose).items():
        assert svc["environment"].get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false", name
        assert svc["environment"].get("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE") == "false", name


# --------------------------------------------------------------------------- init


def test_init_migrates_and_creates_topics_with_rf3_min_isr2(compose: dict[str, Any]) -> None:
    assert init_problems(compose) == []


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("HUB_TOPIC_REPLICATION_FACTOR", "1", "HUB_TOPIC_REPLICATION_FACTOR"),
        ("HUB_TOPIC_MIN_INSYNC_REPLICAS", "1", "HUB_TOPIC_MIN_INSYNC_REPLICAS"),
    ],
)
def test_init_check_catches_weak_topic_settings(compose, key, value, expect) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["init"]["environment"][key] = value
    assert any(expect in p for p in init_problems(broken))


def test_init_check_catches_a_missing_step_and_a_missing_gate(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["init"]["command"] = ["hub", "migrate"]
    broken["services"]["worker"]["depends_on"]["init"]["condition"] = "service_started"
    problems = init_problems(broken)
    assert any("topics --create" in p for p in problems)
    assert any("worker does not wait" in p for p in problems)


# --------------------------------------------------------------------------- services


def test_every_service_has_healthcheck_restart_policy_conditions_and_pinned_image(compose) -> None:
    assert compose_service_problems(compose) == []


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (
            lambda c: c["services"]["worker"].pop("healthcheck"),
            "worker: long-running service without a healthcheck",
        ),
        (
            lambda c: c["services"]["postgres"].update(image="postgres"),
            "postgres: image 'postgres' has no tag",
        ),
        (lambda c: c["services"]["kafka-1"].update(image="apache/kafka:latest"), "floating tag latest"),
        (lambda c: c["services"]["api"].pop("restart"), "api: long-running service without a restart policy"),
        (lambda c: c["services"]["api"].update(depends_on=["init"]), "api: depends_on without conditions"),
        (lambda c: c["services"]["worker"]["environment"].update(HUB_WORKER_STORE="rocksdb://"), "keeps no tables"),
    ],
)
def test_service_check_catches_breakage(compose, mutate, expect) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    problems = compose_service_problems(broken)
    assert any(expect in p for p in problems), problems


def test_hub_services_use_the_project_image_and_the_contract_commands(compose) -> None:
    services = compose["services"]
    for name, cmd in (("api", "hub api"), ("connectors", "hub api"), ("worker", "hub worker")):
        assert services[name]["image"] == "familyhub/hub:0.1.0"
        assert " ".join(services[name]["command"]) == cmd
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["worker"], "workers scale; a fixed host port would block that"


def test_secrets_come_from_compose_secrets(compose: dict[str, Any]) -> None:
    assert compose_secret_problems(compose) == []
    assert set(compose["secrets"]) == {"pseudonym_key", "jwt_key", "payload_master_key", "session_key",
                                       "postgres_password", "audit_signing_key"}


def test_every_hub_service_has_the_settings_its_process_needs(compose: dict[str, Any]) -> None:
    """Compared with hub/core/settings.py: the keys, the session key every API replica shares, the public keys
    to verify checkpoints with; the signer's settings in the deliverer only; every file mounted."""
    assert compose_settings_problems(compose) == []


@pytest.mark.parametrize(("mutate", "expect"), [
    (lambda c: c["services"]["api"]["environment"].pop("HUB_SESSION_KEY_FILE"), "api: HUB_SESSION_KEY_FILE not set"),
    (lambda c: c["services"]["worker"]["environment"].update(HUB_AUDIT_SIGNING_KEY_FILE="/run/secrets/k"),
     "only the checkpoint signer may have it"),
    (lambda c: c["services"]["api"].update(configs=[]), "HUB_AUDIT_PUBLIC_KEYS_FILE /etc/familyhub/audit_public_keys"
                                                         ".pem is on no mounted"),
    (lambda c: c["services"]["api"]["environment"].update(HUB_TYPO="1"), "HUB_TYPO is not a hub setting"),
])
def test_settings_check_catches_breakage(compose: dict[str, Any], mutate, expect) -> None:
    broken = copy.deepcopy(compose)
    for svc in broken["services"].values():  # the anchors share one mapping: give each service its own
        if "environment" in svc:
            svc["environment"] = dict(svc["environment"])
    mutate(broken)
    problems = compose_settings_problems(broken)
    assert any(expect in p for p in problems), problems


def test_only_the_deliverer_holds_the_checkpoint_key_and_file(compose: dict[str, Any]) -> None:
    """The deliverer signs the audit checkpoints (the chores lease holder; the workers run in `process`
    mode): the signing key secret and the checkpoint volume are its alone; every hub service gets the
    public keys to verify with."""
    assert compose_checkpoint_key_problems(compose) == []
    deliverer = compose["services"]["deliverer"]
    assert "audit-checkpoints:/var/lib/hub-audit" in deliverer["volumes"]
    assert deliverer["environment"]["HUB_AUDIT_CHECKPOINT_FILE"].startswith("/var/lib/hub-audit/")
    assert "audit-checkpoints" in compose["volumes"]
    for name in ("api", "connectors", "worker", "init"):
        svc = compose["services"][name]
        assert "audit_signing_key" not in svc["secrets"] and "volumes" not in svc, name


@pytest.mark.parametrize(("mutate", "expect"), [
    (lambda c: c["services"]["api"].update(secrets=[*c["services"]["api"]["secrets"], "audit_signing_key"]),
     "api: mounts the checkpoint signing key"),
    (lambda c: c["services"]["worker"].update(volumes=["audit-checkpoints:/var/lib/hub-audit"]),
     "worker: mounts the checkpoint volume"),
    (lambda c: c["services"]["deliverer"].pop("volumes"), "on no volume of its own"),
    (lambda c: c["services"]["worker"].pop("configs"), "worker: no audit public keys"),
])
def test_checkpoint_key_check_catches_breakage(compose: dict[str, Any], mutate, expect) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    problems = compose_checkpoint_key_problems(broken)
    assert any(expect in p for p in problems), problems


def test_secret_check_catches_plain_passwords(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hub"
    broken["services"]["api"]["environment"] = {
        **broken["services"]["api"]["environment"],
        "HUB_DATABASE_URL": "postgresql+psycopg://hub:hub@postgres:5432/hub",
    }
    broken["services"]["worker"]["secrets"] = ["jwt_key"]
    problems = compose_secret_problems(broken)
    assert any("POSTGRES_PASSWORD" in p for p in problems)
    assert any("HUB_DATABASE_URL" in p for p in problems)
    assert any("worker: HUB_PSEUDONYM_KEY_FILE points at secret" in p for p in problems)
