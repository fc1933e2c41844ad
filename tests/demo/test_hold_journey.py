"""`hub demo`'s disclosure hold, as the demo prints it: held from the family and shown to the coordinator only
as held, then released by the paediatric service and the family's copy follows (the workers' projection and
sharing pass run inline here; a real broker, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from hub.demo import hold_journey
from hub.demo.journey import report_not_sent_journey
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from hub.sharing.follower import Follower
from tests.api.test_timeline_routes import project_log

pytestmark = pytest.mark.broker


def worker(services: Services) -> Callable[[str, Callable[[], Any]], Any]:
    """The demo's wait, with the stream worker's projection and sharing pass run before each look."""
    follower = Follower(services.store, "demo-test")

    async def until(what: str, probe: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            project_log(services)
            follower.step(datetime.now(UTC))
            found = probe()
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"waited for {what}")
    return until


async def test_the_demo_shows_a_diagnosis_held_from_the_family_and_then_released(services: Services) -> None:
    j = report_not_sent_journey(datetime.now(UTC), seed=961, child_id="c-961", household_id="hh-961")
    await services.ingest.accept(j.before_consent + j.consent)
    console = Console(record=True, width=300)

    await hold_journey.run(services, console, j, worker(services))

    out = console.export_text()
    assert "the family's timeline: not shown; their copy: withheld" in out
    assert "the coordinator's timeline: An item is held by Community paediatrics, Serennu" in out
    assert f"their timeline now shows 'Paediatric report issued by Community paediatrics, Serennu: " \
           f"{hold_journey.TITLE}'" in out
    assert "the family's copy is withheld" not in out
    (release,) = AuditLog(services.store).records(actions=["release"])
    assert release.actor == "abuhb-paediatrics" and "explained" not in str(release.detail)  # the reason is sealed
