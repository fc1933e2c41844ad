"""The demo's second act: "they haven't sent me the report".

An SLT report from a neighbouring health board is withheld for want of consent; before the
paediatric appointment the coordinator sees it, and why, and what unblocks it; the family gives
consent; the report is shared, exactly once, before the appointment. A diagnosis under a disclosure
hold stays out of the family's view until the paediatric service releases it. Then the coordinator finds the
report's NHS number was linked to the wrong child: the link is undone and made to the right sibling,
and what the wrong link shared is recalled (a recall notice to the service, the family copy withdrawn).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from rich.console import Console

from hub.core.errors import ConfigError
from hub.db.schema import deliveries
from hub.db.sealed import sealer
from hub.demo import hold_journey
from hub.demo.journey import ReportJourney, report_not_sent_journey
from hub.ingest.services import Services
from hub.sharing import delivery, payloads, readiness


async def _until(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(probe)
        if found:
            return found
        await asyncio.sleep(0.2)
    raise ConfigError(f"the demo waited {timeout:.0f}s for {what}")


def _slt_for_paediatrics(store: Any, household: str) -> dict[str, Any] | None:
    for row in delivery.recipient_states(store, household):
        if row["record_type"] == "ReportIssued" and "paediatrics" in (row["recipient_service"] or "").lower():
            return row
    return None


async def run(services: Services, console: Console) -> str:
    """Play the act; the household it made."""
    store = services.store
    now = datetime.now(UTC)
    # a new family each run, so the demo can be run again on the same data directory
    run = now.strftime("%Y%m%d%H%M%S")
    journey = report_not_sent_journey(now, seed=301 + int(now.timestamp()) % 500_000,
                                      child_id=f"child-morgan-{run}", household_id=f"household-morgan-{run}")
    hh = journey.household_id
    console.rule("[bold]“They haven't sent me the report”[/]")
    await services.ingest.accept(journey.before_consent)

    def withheld_item() -> tuple[dict[str, Any], dict[str, Any]] | None:
        for child in readiness.readiness(store, hh)["children"]:
            for appt in child["appointments"]:
                for item in appt["reports"]:
                    if item["status"] == "withheld":
                        return appt, item
        return None

    appt, item = await _until("the SLT report to be decided", withheld_item)
    console.print(f"Appointment with [bold]{appt['service']}[/] in {appt['days_until']:.0f} days. "
                  f"Reports the clinician will see before it:")
    console.print(f"  [red]withheld[/] {item['title']} from {item['producer']}\n"
                  f"      why: {item['why']}\n      to unblock: [bold]{item['unblock']}[/]")
    console.print("The coordinator is told now, not at the appointment. The family gives consent …")
    await services.ingest.accept(journey.consent)
    row = await _until("the report to be shared after consent",
                       lambda: (r := _slt_for_paediatrics(store, hh)) and r["outcome"] == "permit"
                       and r["state"] in ("queued", "delivered", "acknowledged") and r)
    console.print(f"  [green]{row['outcome']}[/] ({row['basis']}, rule {row['rule_id']}): the report is "
                  f"[bold]{row['state']}[/] for {row['recipient_service']}, "
                  f"{appt['days_until']:.0f} days before the appointment.")
    copies = await _until("the family's copy", lambda: delivery.family_copies(store, hh))
    console.print(f"The family's own view holds {len(copies)} cop{'y' if len(copies) == 1 else 'ies'} of reports "
                  "about their child.")
    await hold_journey.run(services, console, journey, _until)
    await _corrected_link(services, console, journey)
    return hh


def _recalls(store: Any, child_id: str) -> list[dict[str, Any]]:
    DL = deliveries.c
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(deliveries).where(
            DL.kind == "recall", DL.child_id == child_id).order_by(DL.created_at))]


async def _corrected_link(services: Services, console: Console, journey: ReportJourney) -> None:
    """The NHS number was linked to the wrong child: undo the link, link the right sibling, show the recall."""
    (link,) = [e for e in journey.before_consent
               if e.record_type == "IdentityLinked" and e.subject.system == "nhs-number"]
    at = datetime.now(UTC)
    sibling = f"{journey.child_id}-sibling"
    undo = replace(link, source_version=2, occurred_at=at, body={**link.body, "action": "unlink"})
    right = replace(link, source_id=f"link-{sibling}-nhs-number", occurred_at=at + timedelta(milliseconds=1),
                    body={**link.body, "child_id": sibling})
    console.print("The coordinator finds the NHS number was linked to the wrong child: the link is undone and "
                  "made to the right sibling …")
    await services.ingest.accept([undo, right])
    recalls = await _until("the recall", lambda: _recalls(services.store, journey.child_id))
    for r in recalls:
        body = payloads.body(sealer(services.store), r["delivery_id"], r["payload"])
        where = "withdrawn from the family's view" if r["recipient_kind"] == "family" else f"notice to {r['service']}"
        info = body["information"]
        console.print(f"  [yellow]recall[/] {info.get('title') or info['record_type']}: {where} ({body['reason']})")


async def leave_waiting(services: Services, console: Console) -> ReportJourney:
    """A second family in the same position, left waiting for its consent (for `hub demo --serve`: the
    parent gives it on their page, and the coordinator's page shows the report shared)."""
    now = datetime.now(UTC)
    run = now.strftime("%Y%m%d%H%M%S")
    journey = report_not_sent_journey(now, seed=401 + int(now.timestamp()) % 500_000,
                                      child_id=f"child-rhys-{run}", household_id=f"household-rhys-{run}")
    await services.ingest.accept(journey.before_consent)

    def withheld() -> bool:
        return any(i["status"] == "withheld" for c in readiness.readiness(services.store, journey.household_id)
                   ["children"] for a in c["appointments"] for i in a["reports"])

    await _until("the second family's report to be decided", withheld)
    console.print(f"Family {journey.household_id} waits for consent: its SLT report is withheld before the "
                  "paediatric appointment.")
    return journey
