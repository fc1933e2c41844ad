"""The demo's third act: one referral, every service (the ISCAN single point of access).

Cerys Evans's care coordinator refers her to four services in one referral: physiotherapy and Portage
in the health board, housing adaptations in the council, and the council's SEN team. Each part goes
to its own service (consent decides, as for reports). Two answer (physiotherapy accepts, Portage puts
her on its waiting list with an estimate), housing declines with its reason, and the SEN team never
answers: six weeks on, the coordinator has an alert with the step to take.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from hub.core.errors import ConfigError, NotFoundError
from hub.core.events import InboundEvent, SubjectRef
from hub.demo.identifiers import nhs_number
from hub.demo.scenario import CARE_COORD, HOUSING, PHYSIO, PORTAGE, SEND
from hub.ingest.services import Services
from hub.sharing import coordination, referrals
from hub.sharing.alerts import list_alerts

CHILD, HOUSEHOLD = "child-evans-1", "household-evans"
SERVICES = (PHYSIO, PORTAGE, HOUSING, SEND)


@dataclass
class ReferralJourney:
    requisition: str
    referral: list[InboundEvent] = field(default_factory=list)
    answers: list[InboundEvent] = field(default_factory=list)


def referral_journey(now: datetime, requisition: str = "iscan-evans-1") -> ReferralJourney:
    """The referral (made 50 days ago, four parts) and the three answers that come back."""
    nhs, la = SubjectRef("nhs-number", nhs_number(101)), SubjectRef("la-person-id", "NPT-CS-40711")
    made = now - timedelta(days=50)
    parts = [InboundEvent(
        record_type="ReferralMade", sector="social_care", source_system="newport-lcs", source_id=f"{requisition}/{n}",
        occurred_at=made, subject=la, category="general", mapping="demo@1",
        body={"service": svc, "referrer_service": CARE_COORD, "reason": "West syndrome: mobility, play, home, school",
              "pathway": referrals.PATHWAY, "requisition": requisition}) for n, svc in enumerate(SERVICES)]

    def answer(record_type: str, sid: str, days: int, body: dict[str, Any], subject: SubjectRef = nhs,
               system: str = "abuhb-wcp", sector: str = "health") -> InboundEvent:
        return InboundEvent(record_type=record_type, sector=sector, source_system=system,  # type: ignore[arg-type]
                            source_id=sid, occurred_at=made + timedelta(days=days), subject=subject, mapping="demo@1",
                            category="social_care" if sector == "social_care" else "general", body=body)

    answers = [
        answer("ReferralOutcome", f"{requisition}-physio", 4, {"service": PHYSIO, "referral_id": f"{requisition}/0",
                                                                "outcome": "accepted"}),
        answer("WaitingListEntered", f"{requisition}-portage", 6, {"service": PORTAGE, "estimated_wait_days": 120,
                                                                    "referral_id": f"{requisition}/1"}),
        answer("ReferralOutcome", f"{requisition}-housing", 9, {
            "service": HOUSING, "referral_id": f"{requisition}/2", "outcome": "declined", "reason_shareable": True,
            "reason": "the adaptations were assessed last spring; ask for a review instead"},
            subject=la, system="newport-lcs", sector="social_care"),
    ]
    return ReferralJourney(requisition, parts, answers)


def _detail(row: dict[str, Any]) -> str:
    if row["answer"] == "declined":
        return f"reason: {row.get('reason')}"
    if row["answer"] == "waiting_list":
        return f"estimated wait {row.get('estimated_wait_days')} days"
    if row["alert"]:
        return f"[red]alert[/]: {row['alert']['message']}"
    return ""


async def run(services: Services, console: Console, timeout: float = 60) -> None:
    store = services.store
    now = datetime.now(UTC).replace(microsecond=0)
    journey = referral_journey(now, f"iscan-evans-{now:%Y%m%d%H%M%S}")
    console.rule("[bold]One referral, every service[/]")
    await services.ingest.accept(journey.referral + journey.answers)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:  # until the workers have projected the referral and its answers
        view = await asyncio.to_thread(_view, services, journey.requisition)
        if view is not None and sum(r["answer"] != "no_answer" for r in view["services"]) == 3:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigError(f"the demo waited {timeout:.0f}s for the referral's answers")
        await asyncio.sleep(0.2)
    await asyncio.to_thread(coordination.sweep, store)
    view = await asyncio.to_thread(referrals.referral, store, HOUSEHOLD, journey.requisition)
    console.print(f"Cerys's coordinator made one referral ({view['pathway']}) to {len(view['services'])} services; "
                  "each service was sent its own part, as the family's consent allows. What came back:")
    table = Table(show_lines=False, expand=True)
    for col in ("service", "answer", "detail"):
        table.add_column(col)
    for row in view["services"]:
        table.add_row(row["service"]["service_name"], row["answer"].replace("_", " "), _detail(row))
    console.print(table)
    silent = [r for r in view["services"] if r["alert"]]
    for r in silent:
        (alert,) = [a for a in list_alerts(store, household_id=HOUSEHOLD, kind="referral_unanswered")
                    if a["alert_id"] == r["alert"]["alert_id"]]
        console.print(f"The coordinator's alert: {alert['message']}\n  step: [bold]{alert['details']['step']}[/]")


def _view(services: Services, requisition: str) -> dict[str, Any] | None:
    try:
        return referrals.referral(services.store, HOUSEHOLD, requisition)
    except NotFoundError:  # not projected yet
        return None
