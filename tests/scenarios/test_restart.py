"""Restarting the hub loses nothing it accepted and duplicates nothing (seed 000: the Lewis household).

Olivia (West syndrome, without care coordination) has referrals, appointments and a report from
Aneurin Bevan and a school place. The hub is stopped with SIGTERM, as an init system stops it, right
after a batch was accepted and before the workers can be known to have processed it; while it is
down the school's system keeps retrying a batch; the hub starts again on the same database and
cluster. Everything accepted is on the timeline once, resends are answered as duplicates with the
same event ids, and the paediatrician's webhook does not receive again what it already had.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.demo.identifiers import nhs_number, upn
from tests.scenarios.agency_payloads import PAEDIATRICS, SLT, School, appointment, referral, report, school_event
from tests.scenarios.running import Agency, AgencyEndpoint, Coordinator, RunningHub

pytestmark = pytest.mark.scenario
PRIMARY = School("W06000022-S3", "St Julian's Primary School")


def event_ids(*answers: dict[str, Any]) -> list[str]:
    return [r["event_id"] for a in answers for r in a["results"]]


def test_a_restart_loses_nothing_accepted_and_duplicates_nothing(
        hub: RunningHub, paediatrics_webhook: AgencyEndpoint) -> None:
    tag, seed = "t" + uuid.uuid4().hex[:9], random.randrange(10_000, 900_000)
    olivia_nhs, olivia_upn = nhs_number(seed), upn(seed)
    now = datetime.now(UTC).replace(microsecond=0)

    def at(days: float) -> datetime:
        return now + timedelta(days=days)

    coordinator = Coordinator(hub, f"cc-{tag}")
    household, (olivia,) = coordinator.enrol(children=1)
    coordinator.link(household, olivia, "nhs-number", olivia_nhs)
    coordinator.link(household, olivia, "upn", olivia_upn)
    health = Agency(hub, "abuhb-fhir", "7A6")
    # the school's system retries through an outage, as the hub's client does
    school = Agency(hub, "st-julians-mis", PRIMARY.urn, max_attempts=150, backoff_initial=0.2, backoff_max=1.0)
    try:
        first = [
            health.health(referral(f"slt-ref-{tag}", olivia_nhs, at(-370), SLT, "communication")),
            health.health(referral(f"paeds-ref-{tag}", olivia_nhs, at(-370), PAEDIATRICS, "development review")),
            health.health(report(f"slt-report-{tag}", olivia_nhs, at(-250), SLT,
                                 "Speech and language therapy assessment")),
            health.health(appointment(f"paeds-appt-{tag}", olivia_nhs, at(-3), at(7), 30, PAEDIATRICS,
                                      "consultant paediatrician review")),
        ]
        hub.eventually(lambda: len(coordinator.timeline(household)) == 4, "the first four entries")
        # the paediatrician (same health board) receives the SLT report before the restart
        hub.eventually(lambda: paediatrics_webhook.received(olivia), "the SLT report at the paediatrician's webhook")
        before = coordinator.timeline(household)
        delivered = {d["headers"]["Idempotency-Key"] for d in paediatrics_webhook.received(olivia)}

        # accepted just before SIGTERM: the workers may not have processed it yet
        last = health.health(appointment(f"slt-appt-{tag}", olivia_nhs, at(-1), at(14), 45, SLT, "SLT review"))
        assert hub.stop() == 0, hub.tail()

        answers: list[dict[str, Any]] = []
        placement = school_event("school_placement", f"placement-{tag}", at(-40), olivia_upn, PRIMARY,
                                 phase="primary", setting_kind="mainstream", start_date=at(-40).date().isoformat())
        during = threading.Thread(target=lambda: answers.append(school.education(placement)))
        during.start()
        time.sleep(1)  # the school's first attempts find the hub down
        hub.start()
        during.join(150)
        assert answers and answers[0]["accepted"] == 1, answers
        assert school.attempts > 1  # it was refused while the hub was down, and retried

        wanted = set(event_ids(*first, last, *answers))
        entries = hub.eventually(lambda: (e := coordinator.timeline(household)) and len(e) >= 6 and e,
                                 "every accepted event on the timeline after the restart",
                                 show=lambda: [e["record_type"] for e in coordinator.timeline(household)])
        assert sorted(e["event_id"] for e in entries) == sorted(wanted)  # each once, none lost
        unchanged = {e["event_id"]: e for e in entries}
        assert all(unchanged[e["event_id"]] == e for e in before)

        # resending everything after the restart: duplicates, with the event ids first given
        resent = [health.health(referral(f"slt-ref-{tag}", olivia_nhs, at(-370), SLT, "communication")),
                  health.health(appointment(f"slt-appt-{tag}", olivia_nhs, at(-1), at(14), 45, SLT,
                                            "SLT review")),
                  school.education(placement)]
        assert [a["duplicates"] for a in resent] == [1, 1, 1]
        assert event_ids(*resent) == event_ids(first[0], last, answers[0])

        time.sleep(2)  # let the restarted workers' delivery passes run
        assert len(coordinator.timeline(household)) == 6
        again = [d["headers"]["Idempotency-Key"] for d in paediatrics_webhook.received(olivia)]
        assert len(again) == len(set(again)) and delivered <= set(again)  # nothing delivered twice
    finally:
        health.close()
        school.close()
