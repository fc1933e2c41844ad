"""The demo's disclosure hold: a diagnosis the family must hear in person first, then released.

The community paediatrician records a diagnosis under a disclosure hold ("not yet told to the family").
The family's view does not show it and holds no copy; the coordinator sees only that an item is held
by the service. After the clinic appointment the paediatric service releases the hold (audited, the
reason sealed): the family's copy follows at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from hub.core.events import InboundEvent
from hub.demo.journey import ABUHB_PAEDS, ReportJourney
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.sharing import delivery
from hub.sharing.safeguarding import Caller, release_hold
from hub.sharing.visibility import ReadView
from hub.stream import readmodel

TITLE = "Paediatric assessment: diagnosis"


def _held_entry(services: Services, journey: ReportJourney, source_id: str) -> dict[str, Any] | None:
    for e in readmodel.child_records(services.store, journey.household_id, journey.child_id):
        if e["record"].get("meta", {}).get("source_id") == source_id:
            return e
    return None


def _read_as(services: Services, journey: ReportJourney, principal: Principal, event_id: str) -> dict[str, Any] | None:
    hh = journey.household_id
    view = ReadView.load(services.store, principal, [hh])
    entries, _ = readmodel.timeline(services.store, hh, limit=500, view=view.entry_view(hh))
    return next((e for e in entries if e["event_id"] == event_id), None)


def family_copy(services: Services, journey: ReportJourney, event_id: str) -> dict[str, Any] | None:
    for row in delivery.recipient_states(services.store, journey.household_id, journey.child_id):
        if row["information_id"] == event_id and row["recipient_kind"] == "family":
            return row
    return None


async def run(services: Services, console: Console, journey: ReportJourney, until: Any) -> None:
    """The hold and its release (``until(what, probe)`` waits for the workers, as the rest of the demo)."""
    source_id = f"abuhb-diagnosis-{journey.child_id}"
    console.rule("[bold]A diagnosis the family must hear in person first[/]")
    await services.ingest.accept([InboundEvent(
        record_type="ReportIssued", sector="health", source_system="abuhb-wcp", source_id=source_id,
        occurred_at=datetime.now(UTC), subject=_nhs(journey), category="clinical",
        mapping="demo@1", body={"report_id": f"diag-{journey.child_id}", "service": ABUHB_PAEDS,
                                "report_kind": "paediatric", "title": TITLE, "disclosure_hold": True})])
    entry = await until("the held diagnosis", lambda: _held_entry(services, journey, source_id))
    event_id = entry["event_id"]
    copy = await until("the family's copy to be decided", lambda: family_copy(services, journey, event_id))
    parents = Principal(f"parents-{journey.household_id}", "parent", household=journey.household_id)
    coordinator = Principal("cc-demo", "coordinator")
    seen = await asyncio.to_thread(_read_as, services, journey, parents, event_id)
    held = await asyncio.to_thread(_read_as, services, journey, coordinator, event_id)
    console.print(f"The paediatrician records {TITLE!r} [red]under a disclosure hold[/]:")
    console.print(f"  the family's timeline: {'not shown' if seen is None else seen['summary']}; "
                  f"their copy: [bold]{copy['state']}[/]")
    console.print(f"  the coordinator's timeline: {held['summary'] if held else 'not shown'}")
    console.print("After telling the family in clinic, the paediatric service releases the hold …")
    out = await asyncio.to_thread(
        release_hold, services.store, services.vault, journey.household_id, journey.child_id, event_id,
        caller=Caller("abuhb-paediatrics", "agency", ABUHB_PAEDS["agency_id"]),
        reason="diagnosis explained to the family in clinic")
    after = await until("the family's copy after the release",
                        lambda: (c := family_copy(services, journey, event_id)) and c["state"] != "withheld" and c)
    shown = await asyncio.to_thread(_read_as, services, journey, parents, event_id)
    console.print(f"  [green]released[/] ({out['status']}, audited): the family's copy is [bold]{after['state']}[/]; "
                  f"their timeline now shows {shown['summary'] if shown else 'nothing'!r}")


def _nhs(journey: ReportJourney) -> Any:
    (report,) = [e for e in journey.before_consent if e.record_type == "ReportIssued"]
    return report.subject
