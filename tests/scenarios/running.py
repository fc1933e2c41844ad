"""The hub as its users meet it: `hub up` as a real process, and HTTP calls made the way each role makes them.

* :class:`RunningHub` starts and stops `hub up` on a cluster (SIGTERM, as an init system does).
* :class:`Agency` is an agency system sending its own formats with the hub's client (retries included).
* :class:`Coordinator` enrols a household and reads what the hub holds about it.
* :class:`AgencyEndpoint` is an agency's webhook: a small HTTP server, the edge of the world.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from connectors.client import BatchResult, HubClient
from hub.core.settings import Settings
from hub.demo.identifiers import nhs_number
from hub.kafka.broker import free_port
from hub.kafka.topics import GROUP_ID, consumer_lag
from tests.scenarios.cluster import Cluster
from tests.sharing.sharing_support import Webhook
from tests.support import bearer, ready, spawn, stop, wait_until

TIMEOUT = 30.0  # HTTP calls to the hub
PAEDIATRICS_SECRET = "paediatrics-webhook-secret-0123"  # shared with Aneurin Bevan's webhook


class AgencyEndpoint(Webhook):
    """An agency's webhook (the shared test endpoint) with the secret the hub signs its deliveries with."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def received(self, child_id: str, kind: str = "share") -> list[dict[str, Any]]:
        """The deliveries of ``kind`` about one child, each with its parsed JSON as ``json``."""
        out = []
        for r in list(self.requests):
            doc = json.loads(r["body"])
            if doc.get("kind") == kind and doc.get("child_id") == child_id:
                out.append({**r, "json": doc})
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: seconds between the suite hub's coordination sweeps (they read the households with something new or due), so
#: that a scenario sees the alerts the hub raises without waiting out the default minute
SWEEP_EVERY = 2


class RunningHub:
    """`hub up` on a cluster, with its own data directory and SQLite database, kept across restarts."""

    def __init__(self, cluster: Cluster, workdir: Path, webhooks: dict[str, AgencyEndpoint]) -> None:
        self.cluster = cluster
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        hooks = workdir / "webhooks.json"
        hooks.write_text(json.dumps({a: {"url": e.url, "secret": e.secret} for a, e in webhooks.items()}))
        self.env = cluster.hub_env(workdir / "data", self.port, webhooks_file=hooks,
                                   sharing_coordination_interval=SWEEP_EVERY)
        self.log = workdir / "hub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        #: how long the workers may take to project what was accepted (machines under load included)
        self.patience = 60.0 if cluster.embedded else 120.0

    def start(self) -> None:
        proc = self.proc = spawn(["up"], self.env, self.log)
        startup = 60 if self.cluster.embedded else 180
        wait_until(lambda: ready(self.base) or proc.poll() is not None, startup, "hub up to be ready")
        assert proc.poll() is None, f"hub up exited with {proc.returncode}:\n{self.tail()}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        code = stop(self.proc, sig, timeout=60)
        self.proc = None
        return code

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"

    def call(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.base + path, headers=headers, timeout=TIMEOUT, **kwargs)

    def caught_up(self) -> bool:
        """The workers have processed (and committed) every record on the ingest topics."""
        return asyncio.run(worker_lag(self.cluster.bootstrap)) == 0

    def eventually(self, predicate: Callable[[], Any], what: str, show: Callable[[], Any] | None = None) -> Any:
        """Wait for ``predicate``; on timeout say what ``show`` returns and how the hub's log ends."""
        try:
            return wait_until(predicate, self.patience, what)
        except AssertionError as exc:
            seen = f"\n--- state ---\n{show()!r}" if show is not None else ""
            raise AssertionError(f"{exc}{seen}\n--- hub log tail ---\n{self.tail()}") from None


class Agency:
    """An agency system: its own formats, through the hub's client, with an agency token."""

    def __init__(self, hub: RunningHub, system: str, agency_id: str, **client: Any) -> None:
        token = bearer("agency", system, agency=agency_id)["Authorization"].removeprefix("Bearer ")
        self.client = HubClient(hub.base, token=token, timeout=TIMEOUT, **client)
        self.attempts = 0  # HTTP attempts the last batch took

    def health(self, resource: dict[str, Any]) -> dict[str, Any]:
        return self._one(self.client.send_health(resource))

    def social_care(self, *events: dict[str, Any]) -> dict[str, Any]:
        return self._one(self.client.send_social_care(list(events)))

    def education(self, *events: dict[str, Any]) -> dict[str, Any]:
        return self._one(self.client.send_education(list(events)))

    def _one(self, results: list[BatchResult]) -> dict[str, Any]:
        """The hub's answer to a batch: accepted / duplicates / rejected counts and one result per event."""
        (result,) = results
        self.attempts = result.attempts
        assert result.status_code == 200 and isinstance(result.body, dict), result.body
        return result.body

    def close(self) -> None:
        self.client.close()


class Coordinator:
    """A care coordinator: enrols a household, links identifiers, reads the family's record."""

    def __init__(self, hub: RunningHub, coordinator_id: str) -> None:
        self.hub = hub
        self.id = coordinator_id
        self.auth = bearer("coordinator", coordinator_id)

    def _call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        r = self.hub.call(method, path, self.auth, **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def enrol(self, children: int) -> tuple[str, list[str]]:
        """A new household on this coordinator's caseload, with ``children`` child members."""
        household = self._call("POST", "/v1/households", 201, json={"coordinator_id": self.id})["household_id"]
        members = [self._call("POST", f"/v1/households/{household}/members", 201,
                              json={"kind": "child", "relationship": "child"})["member_id"] for _ in range(children)]
        return household, members

    def link(self, household: str, member: str, system: str, value: str) -> None:
        self._call("POST", f"/v1/households/{household}/members/{member}/identifiers", 202,
                   json={"system": system, "value": value, "reason": "enrolled with the family"})

    def consent(self, household: str, child: str, resource: dict[str, Any]) -> None:
        """Record a consent directive (FHIR R4 Consent) on the family's behalf."""
        self._call("POST", f"/v1/households/{household}/children/{child}/consents", 202, json=resource)

    def timeline(self, household: str, **filters: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {**filters, "limit": "100", **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", f"/v1/households/{household}/timeline", params=params)
            entries += page["entries"]
            cursor = page["next_cursor"]
            if not cursor:
                return entries

    def team(self, household: str, child: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/households/{household}/children/{child}/team")["team"])

    def appointments(self, household: str) -> dict[str, list[dict[str, Any]]]:
        return dict(self._call("GET", f"/v1/households/{household}/appointments")["children"])

    def readiness(self, household: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/households/{household}/readiness"))

    def shares(self, household: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/households/{household}/shares")["shares"])


async def worker_lag(bootstrap: str) -> int:
    """Records on the ingest topics the workers' consumer group has not committed, as ``/metrics`` reports it."""
    return sum((await consumer_lag(Settings(kafka_bootstrap=bootstrap), GROUP_ID)).values())


def when(entry: dict[str, Any], key: str = "occurred_at") -> datetime:
    return datetime.fromisoformat(entry[key])


@dataclass(frozen=True)
class Door:
    """A scenario's child to try the doors on: one child with an NHS number, in a household of its own coordinator's
    caseload, and another coordinator (``other``) with a household of their own, who must be refused it."""
    tag: str
    nhs: str
    coordinator: Coordinator
    household: str
    child: str
    other: str


def door(hub: RunningHub, prefix: str, serials: int) -> Door:
    """A fresh :class:`Door`: ids tagged at random, the NHS number from ``serials`` up."""
    tag = uuid.uuid4().hex[:8]
    nhs = nhs_number(serials + int(tag[:4], 16))
    coordinator = Coordinator(hub, f"cc-{prefix}-{tag}")
    household, (child,) = coordinator.enrol(children=1)
    coordinator.link(household, child, "nhs-number", nhs)
    other = f"cc-{prefix}-other-{tag}"
    Coordinator(hub, other).enrol(children=1)
    return Door(tag, nhs, coordinator, household, child, other)
