"""A safeguarding override ends: what was shared only under it is no longer shared, once, audited. SQLite and
PostgreSQL, through the sharing step (the chore runs as the worker's and the deliverer's job does)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from hub.core.events import InboundEvent, SubjectRef
from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.demo.journey import ABUHB_PAEDS, CAV_SLT
from hub.governance.audit import AuditLog
from hub.sharing.safeguarding import Caller, OverrideRequest, expire_overrides, make_override
from tests.sharing.sharing_support import Feeder, stored_deliveries
from tests.sharing.test_safeguarding import JUSTIFICATION, NOW, _journey, _vault

DL = deliveries.c


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def to_slt(store: Store, child: str) -> dict[str, dict[str, Any]]:
    """Shares of the child's reports to speech and language therapy (the override's recipient), by title."""
    rows = stored_deliveries(store, DL.child_id == child, DL.kind == "share", DL.service == CAV_SLT["service_name"])
    out = {}
    for r in rows:
        info = json.loads(r["payload"])["information"]
        if info["record_type"] == "ReportIssued":
            out[info["title"]] = {"state": r["state"], "basis": json.loads(r["payload"])["decision"]["basis"]}
    return out


def overridden(store: Store, n: int, days: int = 7) -> tuple[Feeder, str]:
    feeder = Feeder(store, NOW)
    _journey(feeder, n, hold=False)
    req = OverrideRequest("7A4", JUSTIFICATION, NOW + timedelta(days=days), recipient_service=CAV_SLT["service_name"])
    out = make_override(store, _vault(store), f"hh-{n}", f"c-{n}", req, caller=Caller("dsl-1", "safeguarding_lead"))
    assert to_slt(store, f"c-{n}")["Paediatric assessment: diagnosis"] == {"state": "queued", "basis": "safeguarding"}
    return feeder, str(out["override_id"])


def test_an_ended_override_stops_its_shares_once_and_the_end_is_audited(store: Store) -> None:
    feeder, oid = overridden(store, 621)
    ended = NOW + timedelta(days=8)

    assert expire_overrides(store, ended) == 1

    assert to_slt(store, "c-621")["Paediatric assessment: diagnosis"]["state"] in ("cancelled", "withheld")
    (rec,) = AuditLog(store).records(actions=["override_expired"])
    assert rec.subject_child == "c-621" and rec.data_ref == f"override:{oid}" and rec.actor_role == "system"
    assert rec.detail["recipient_agency"] == "7A4" and JUSTIFICATION not in json.dumps(rec.detail)
    assert expire_overrides(store, ended + timedelta(minutes=1)) == 0  # once
    assert len(AuditLog(store).records(actions=["override_expired"])) == 1

    nhs = SubjectRef("nhs-number", nhs_number(621))  # a report after the end is decided without the override
    feeder.feed([InboundEvent(
        record_type="ReportIssued", sector="health", source_system="abuhb", source_id="r-621-later",
        occurred_at=ended, subject=nhs, category="clinical",
        body={"report_id": "r-621-later", "service": ABUHB_PAEDS, "report_kind": "paediatric",
              "title": "Paediatric review"})], ended)
    slt = to_slt(store, "c-621")
    assert slt["Paediatric review"]["state"] == "withheld"
    assert slt["Paediatric assessment: diagnosis"]["state"] != "queued"  # the follower's pass keeps it stopped


def test_an_override_still_in_force_is_left_alone(store: Store) -> None:
    _, _ = overridden(store, 622, days=30)

    assert expire_overrides(store, NOW + timedelta(days=8)) == 0

    assert to_slt(store, "c-622")["Paediatric assessment: diagnosis"]["state"] == "queued"
    assert not AuditLog(store).records(actions=["override_expired"])
