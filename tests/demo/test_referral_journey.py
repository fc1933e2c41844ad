"""The demo's single-point-of-access act, through the sharing step as the worker runs it: one referral to
four services, two answer, one declines with its reason, one never answers and raises the alert."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.db.store import Store
from hub.demo import scenario
from hub.demo.referral_journey import HOUSEHOLD, referral_journey
from hub.sharing import coordination, referrals
from hub.sharing.alerts import list_alerts
from tests.sharing.sharing_support import Feeder

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(sqlite_url: str) -> Store:
    return Store.open(sqlite_url)


def test_one_referral_to_four_services_two_answer_one_declines_one_never_answers(store: Store) -> None:
    journey = referral_journey(NOW)
    links = [e for e in scenario.build(NOW).events if e.record_type == "IdentityLinked"]
    Feeder(store, NOW).feed(links + journey.referral + journey.answers, NOW)
    coordination.sweep(store, NOW)
    view = referrals.referral(store, HOUSEHOLD, journey.requisition)
    answers = [(r["service"]["service_name"], r["answer"]) for r in view["services"]]
    assert answers == [("Physiotherapy, Serennu", "accepted"),
                       ("Portage (child development advisors)", "waiting_list"),
                       ("Housing adaptations", "declined"), ("SEN and inclusion team", "no_answer")]
    assert view["services"][2]["reason"].startswith("the adaptations were assessed last spring")
    assert [r["alert"] is not None for r in view["services"]] == [False, False, False, True]
    (alert,) = list_alerts(store, household_id=HOUSEHOLD, kind="referral_unanswered")
    assert alert["message"].startswith("Referral to SEN and inclusion team on ")
    assert alert["details"]["step"] == "Ask SEN and inclusion team whether the referral was received and when " \
                                       "the family will hear"
