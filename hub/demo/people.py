"""The demo's people on the pages: a coordinator with the demo families on their caseload, a parent of the
family waiting for consent, a young person, the paediatric service, an IG officer and a commissioner, each
with a one-time sign-in link (`hub demo --serve` prints them)."""

from __future__ import annotations

from hub.demo.journey import ReportJourney
from hub.family.enrolment import Enrolment
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.pages import signin

COORDINATOR = "cc-demo"
PAEDIATRICS_AGENCY = "7A6"  # Aneurin Bevan University Health Board: the paediatric appointment's service


def people(waiting: ReportJourney, households: list[str], young_person: tuple[str, str]) -> list[tuple[str, Principal]]:
    household, child = young_person
    return [
        ("care coordinator", Principal(COORDINATOR, "coordinator")),
        (f"parent of {waiting.household_id} (report withheld until they consent)",
         Principal(f"parent-{waiting.household_id}", "parent", household=waiting.household_id)),
        (f"young person {child}", Principal(f"yp-{child}", "young_person", household=household, member=child)),
        (f"paediatric service (agency {PAEDIATRICS_AGENCY})",
         Principal("abuhb-paediatrics", "agency", agency=PAEDIATRICS_AGENCY)),
        ("information governance officer", Principal("ig-demo", "ig_officer")),
        ("commissioner (the coordination KPIs)", Principal("commissioner-demo", "commissioner")),
    ]


def sign_in_links(services: Services, base_url: str, waiting: ReportJourney, households: list[str],
                  young_person: tuple[str, str]) -> list[tuple[str, str]]:
    """Put the demo's households on the coordinator's caseload and make one link per person."""
    enrolment = Enrolment(services.store, services.ingest, services.vault)
    for hh in households:
        enrolment.assign(COORDINATOR, hh, by="demo")
    minutes = services.settings.signin_link_minutes
    return [(who, f"{base_url}/sign-in/{signin.issue(services.store, principal, minutes)}")
            for who, principal in people(waiting, households, young_person)]
