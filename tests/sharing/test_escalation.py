"""Escalation re-checks every open delivery alert, however many are open (real SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.sharing import delivery
from hub.sharing.alerts import list_alerts, raise_alert
from tests.sharing.sharing_support import Feeder, deliver

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OLDER = 1_001  # more open alerts than one page of the alerts table


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def test_a_share_withdrawn_behind_a_thousand_older_open_alerts_still_resolves_its_alert(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=931, child_id="c-931", household_id="hh-931")
    feeder.feed(j.before_consent + j.consent, NOW)
    deliver(store, NOW + timedelta(seconds=1))  # no webhook for the paediatric service: unread in its inbox
    DL = deliveries.c
    with store.engine.begin() as conn:  # a busy hub: many older shares nobody read, each already escalated
        (row,) = conn.execute(sa.select(deliveries).where(
            DL.agency_id == ABUHB_PAEDS["agency_id"], DL.kind == "share").order_by(DL.delivery_id).limit(1)).all()
        for _ in range(OLDER):
            did = str(uuid.uuid4())
            conn.execute(deliveries.insert().values({**row._mapping, "delivery_id": did, "escalated_at": NOW,
                                                     "information_id": str(uuid.uuid4())}))
            raise_alert(conn, key=f"ack_overdue:{did}", kind="ack_overdue", household_id=j.household_id,
                        child_id=row.child_id, to_agency_id=None, to_service=None, now=NOW,
                        message="an older share not read", details={"delivery_id": did})
    assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=73)) == 2  # the journey's two shares
    newest = list_alerts(store, household_id=j.household_id, kind="ack_overdue")[-1]
    assert newest["message"] != "an older share not read"

    with store.engine.begin() as conn:  # as the sharing step cancels a share consent no longer allows
        conn.execute(deliveries.update().where(DL.delivery_id == newest["details"]["delivery_id"]).values(
            state="cancelled", closed_at=NOW + timedelta(hours=74), why="consent withdrawn before delivery"))
    assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=75)) == 0
    (resolved,) = list_alerts(store, household_id=j.household_id, state="resolved")
    assert resolved["alert_id"] == newest["alert_id"] and "withdrawn before" in resolved["resolution"]
    assert resolved["resolved_at"] == NOW + timedelta(hours=75)
    assert len(list_alerts(store, household_id=j.household_id, state="open")) == OLDER + 1  # still unread
