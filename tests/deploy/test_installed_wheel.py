"""The installed artefact: a wheel, installed as deploy/Dockerfile installs it, runs from any directory.

One fresh virtual environment for the module (building it is the slow part); one `hub up` on the embedded
default from an unrelated directory; then the image's own command (`hub api`, with the image's ENV) beside
it on the same broker and database, as a container of the image would run.
"""

from __future__ import annotations

import re
import signal
import subprocess
import tomllib
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hub.core.settings import Settings, running_bootstrap
from hub.demo.identifiers import nhs_number
from hub.kafka.broker import free_port
from tests.support import TEST_JWT_KEY, bearer, enrol_child, ready, stop, wait_until

from ._support import REPO
from .installed import InstalledHub, build_and_install, image_command

pytestmark = pytest.mark.broker
AGENCY = bearer("agency", "abuhb-pas", agency="7A6")
COORDINATOR = bearer("coordinator", "cc-1")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledHub:
    return build_and_install(tmp_path_factory.mktemp("artefact"))


class Running:
    def __init__(self, installed: InstalledHub, data: Path) -> None:
        self.installed, self.data = installed, data
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = installed.env(HUB_DATA_DIR=str(data), HUB_API_PORT=str(self.port), HUB_JWT_KEY=TEST_JWT_KEY,
                                 HUB_PSEUDONYM_KEY="test-key-0123456789abcdef", HUB_METRICS_INTERVAL="0.5")
        self.log = data.parent / "hub-up.log"
        self.proc = subprocess.Popen([installed.hub, "up"], cwd=installed.workdir, env=self.env,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> None:
        wait_until(lambda: ready(self.base) or self.proc.poll() is not None, 90, "the installed `hub up`")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def up(installed: InstalledHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    hub = Running(installed, tmp_path_factory.mktemp("installed-up") / "data")
    try:
        hub.wait()
        yield hub
    finally:
        if hub.proc.poll() is None:
            stop(hub.proc, signal.SIGTERM)


def event(source_id: str, nhs: str) -> dict[str, object]:
    return {"record_type": "AttendanceRecorded", "sector": "health", "source_system": "abuhb-pas",
            "source_id": source_id, "occurred_at": datetime(2026, 3, 2, 10, tzinfo=UTC).isoformat(),
            "subject": {"system": "nhs-number", "value": nhs},
            "body": {"appointment_id": source_id, "outcome": "attended",
                     "service": {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy"}}}


def timeline(base: str, household: str, auth: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{base}/v1/households/{household}/timeline", headers=auth, timeout=10)


def test_the_wheel_carries_every_schema_mapping_and_rule_set(installed: InstalledHub) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = {f"hub/schemas/{p.relative_to(REPO / 'schemas')}" for p in (REPO / "schemas").rglob("*.avsc")}
    expected |= {str(p.relative_to(REPO)) for p in (REPO / "connectors" / "mappings").rglob("*.json")}
    expected |= {str(p.relative_to(REPO)) for p in (REPO / "consent" / "rulesets").glob("*.json")}
    assert len(expected) > 60 and expected <= names, sorted(expected - names)


def test_installed_hub_prints_the_package_version(installed: InstalledHub) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = subprocess.run([installed.hub, "--version"], cwd=installed.workdir, env=installed.env(),
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, f"hub {version}"), done.stderr


def test_hub_up_from_another_directory_takes_an_agency_event_to_the_coordinators_timeline(up: Running) -> None:
    household, _ = enrol_child(up.base, "cc-1", "nhs-number", nhs_number(41))
    accepted = httpx.post(f"{up.base}/v1/events", headers=AGENCY, json=[event("att-1", nhs_number(41))], timeout=30)
    assert accepted.status_code == 200 and accepted.json()[0]["status"] == "accepted", accepted.text
    entries = wait_until(lambda: (r := timeline(up.base, household, COORDINATOR)).status_code == 200
                         and r.json()["entries"], 30, "the event on the coordinator's timeline")
    assert [e["record_type"] for e in entries] == ["AttendanceRecorded"]
    # another coordinator's caseload does not hold this household: the same answer as no household at all
    assert timeline(up.base, household, bearer("coordinator", "cc-2")).status_code == 404
    assert "HUB_SCHEMA_DIR" not in up.env and not list(up.installed.workdir.iterdir())
    # the sampler saw the event reach the timeline: its delay is in the histogram, in seconds
    delay = re.compile(r"^hub_projection_delay_seconds_count (\d+\.\d+)$", re.M)
    wait_until(lambda: (m := delay.search(httpx.get(f"{up.base}/metrics", headers=bearer("monitor"),
                                                    timeout=10).text)) and float(m[1]) >= 1,
               20, "the projection delay observed")


def test_the_images_command_serves_agencies_and_coordinators_beside_the_stack(up: Running) -> None:
    image = image_command()
    assert image.entrypoint == ["hub"] and image.cmd == ["api"], image
    bootstrap = running_bootstrap(Settings(data_dir=up.data))
    assert bootstrap, "the installed `hub up` wrote no broker address"
    port = free_port()
    env = up.installed.env(**image.env)
    env.update(HUB_DATA_DIR=str(up.data), HUB_API_HOST="127.0.0.1", HUB_API_PORT=str(port), HUB_JWT_KEY=TEST_JWT_KEY,
               HUB_PSEUDONYM_KEY="test-key-0123456789abcdef", HUB_KAFKA_BOOTSTRAP=bootstrap,
               PATH=f"{up.installed.venv / 'bin'}:/usr/bin:/bin")
    migrated = subprocess.run([*image.entrypoint, "migrate"], cwd=up.installed.workdir, env=env,
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    log = up.data.parent / "image-cmd.log"
    proc = subprocess.Popen([*image.entrypoint, *image.cmd], cwd=up.installed.workdir, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: ready(base) or proc.poll() is not None, 60, "the image's `hub api`")
        assert proc.poll() is None, log.read_text()[-3000:]
        household, _ = enrol_child(base, "cc-1", "nhs-number", nhs_number(42))
        sent = httpx.post(f"{base}/v1/events", headers=AGENCY, json=[event("att-2", nhs_number(42))], timeout=30)
        assert sent.status_code == 200, sent.text
        wait_until(lambda: (r := timeline(base, household, COORDINATOR)).status_code == 200 and r.json()["entries"],
                   30, "the event through the image's API on the timeline")
        assert httpx.get(f"{base}/v1/households/{household}/timeline", timeout=10).status_code == 401
    finally:
        if proc.poll() is None:
            stop(proc, signal.SIGTERM)
