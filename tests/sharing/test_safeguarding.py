"""Disclosure holds released and safeguarding overrides, through the sharing step on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.core.errors import NotFoundError, ValidationError
from hub.core.events import InboundEvent, SubjectRef
from hub.db.keyvault import SqlKeyVault
from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.demo.journey import ABUHB_PAEDS, CAV_SLT
from hub.governance.audit import AuditLog
from hub.governance.audit_queries import overrides
from hub.sharing.safeguarding import Caller, OverrideRequest, make_override, release_hold
from hub.stream import readmodel
from hub.wire.sealing import MasterKeyring
from tests.sharing.sharing_support import Feeder, stored_deliveries

NOW = datetime.now(UTC).replace(microsecond=0)
JUSTIFICATION = "Bruising disclosed at school; strategy discussion convened under section 47."


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def _vault(store: Store) -> SqlKeyVault:
    return SqlKeyVault(store, MasterKeyring.from_text("test master key for sealing reasons"))


def _journey(feeder: Feeder, n: int, *, hold: bool) -> str:
    nhs = SubjectRef("nhs-number", nhs_number(n))
    events = [
        InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrol", source_id=f"l-{n}",
                     occurred_at=NOW - timedelta(days=9), subject=nhs,
                     body={"action": "link", "child_id": f"c-{n}", "household_id": f"hh-{n}",
                           "identifier_system": "nhs-number"}),
        InboundEvent(record_type="AppointmentBooked", sector="health", source_system="cav", source_id=f"a-{n}",
                     occurred_at=NOW - timedelta(days=8), subject=nhs,
                     body={"service": CAV_SLT, "start": NOW + timedelta(days=3)}),
        InboundEvent(record_type="ReportIssued", sector="health", source_system="abuhb", source_id=f"r-{n}",
                     occurred_at=NOW - timedelta(days=1), subject=nhs, category="clinical",
                     body={"report_id": f"r-{n}", "service": ABUHB_PAEDS, "report_kind": "paediatric",
                           "title": "Paediatric assessment: diagnosis", "disclosure_hold": hold}),
    ]
    feeder.feed(events, NOW)
    (entry,) = [e for e in readmodel.child_records(feeder.store, f"hh-{n}", f"c-{n}")
                if e["record_type"] == "ReportIssued"]
    return str(entry["event_id"])


def _share(store: Store, event_id: str, recipient_kind: str) -> dict[str, Any]:
    found = stored_deliveries(store, deliveries.c.information_id == event_id,
                              deliveries.c.recipient_kind == recipient_kind, deliveries.c.kind == "share")
    assert len(found) == 1, found
    return found[0]


def test_the_producing_agency_releases_a_hold_and_the_family_copy_follows(store: Store) -> None:
    feeder = Feeder(store, NOW)
    event_id = _journey(feeder, 601, hold=True)
    assert _share(store, event_id, "family")["state"] == "withheld"
    vault = _vault(store)
    with pytest.raises(NotFoundError):  # another agency: as if the entry were not there
        release_hold(store, vault, "hh-601", "c-601", event_id, caller=Caller("slt-1", "agency", "7A4"),
                     reason="told the family in clinic")
    assert _share(store, event_id, "family")["state"] == "withheld"
    out = release_hold(store, vault, "hh-601", "c-601", event_id, caller=Caller("paed-1", "agency", "7A6"),
                       reason="told the family in clinic")
    assert out["status"] == "released"
    assert _share(store, event_id, "family")["state"] == "queued"
    (entry,) = [e for e in readmodel.child_records(store, "hh-601", "c-601") if e["event_id"] == event_id]
    assert entry["released"] is True
    (rec,) = AuditLog(store).records(actions=["release"])
    assert rec.actor == "paed-1" and "told the family" not in json.dumps(rec.detail)  # the reason is sealed
    feeder.follow(NOW)  # the follower's next pass keeps the release
    assert _share(store, event_id, "family")["state"] == "queued"


def test_a_safeguarding_override_shares_a_withheld_report_and_ig_sees_it_at_once(store: Store) -> None:
    feeder = Feeder(store, NOW)
    event_id = _journey(feeder, 602, hold=False)
    slt = [d for d in _all(store, event_id) if d["service"] == CAV_SLT["service_name"]]
    assert slt[0]["state"] == "withheld"
    vault = _vault(store)
    with pytest.raises(ValidationError):
        make_override(store, vault, "hh-602", "c-602", OverrideRequest("7A4", "too short", NOW + timedelta(days=7)),
                      caller=Caller("dsl-1", "safeguarding_lead"))
    req = OverrideRequest("7A4", JUSTIFICATION, NOW + timedelta(days=7), recipient_service=CAV_SLT["service_name"])
    out = make_override(store, vault, "hh-602", "c-602", req, caller=Caller("dsl-1", "safeguarding_lead"))
    slt = [d for d in _all(store, event_id) if d["service"] == CAV_SLT["service_name"]]
    assert slt[0]["state"] == "queued"
    assert json.loads(slt[0]["payload"])["decision"]["basis"] == "safeguarding"
    (status,) = [s for s in overrides(store) if s.override.actor == "dsl-1"]
    assert status.awaiting_review and status.override.data_ref == f"override:{out['override_id']}"
    assert JUSTIFICATION not in json.dumps(status.override.detail)
    feeder.follow(NOW)
    slt = [d for d in _all(store, event_id) if d["service"] == CAV_SLT["service_name"]]
    assert slt[0]["state"] == "queued"


def _all(store: Store, event_id: str) -> list[dict[str, Any]]:
    return stored_deliveries(store, deliveries.c.information_id == event_id, deliveries.c.kind == "share")
