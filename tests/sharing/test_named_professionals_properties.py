"""Property: whatever the family grants and withdraws, in whatever order, what each paediatrician can
see — read from what their service was actually sent — is what the consent engine permits them now.

Each example is one child (a fresh id in one SQLite database): the SLT report from another health
board, Dr Ahmed (consultant) and Dr Bowen (registrar) in the paediatric service, then a random run
of grants and withdrawals from a pool of directives (all health; all health but never Dr Bowen;
never Dr Ahmed; only Dr Ahmed; never a registrar; the whole health board; no health service). After
each step the sharing step runs and the agency reads its inbox. The service's view is rebuilt from
the messages alone: a share to the service gives everyone but ``not_for_professionals`` a copy, a
withdrawal notice to the service takes that copy away, a share addressed to a professional gives
them access of their own (which a notice to the service does not take), and a notice addressed to a
professional takes away all their access until a later share covers them again. That view must match
:func:`hub.sharing.decisions.decide` for each professional, and for any other member of the service
(the service's own decision).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import Directive, DirectiveDecision, Grantor, Provision, Purpose, Scope, Sector
from hub.core.events import InboundEvent
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.sharing import delivery
from hub.sharing.child_state import directive_set, load_states
from hub.sharing.decisions import decide
from hub.sharing.model import shareable_from, targets_for
from hub.stream import readmodel
from hub.stream.team import team_around
from tests.sharing.sharing_support import Feeder, consent_event, withdraw_event

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AHMED = {"id": "paed-ahmed", "role": "consultant", "display_name": "Dr Ahmed"}
BOWEN = {"id": "paed-bowen", "role": "registrar", "display_name": "Dr Bowen"}
HEALTH = frozenset({Sector.HEALTH})
CARE = frozenset({Purpose.DIRECT_CARE})
POOL: list[tuple[DirectiveDecision, Scope, tuple[Provision, ...]]] = [
    (DirectiveDecision.PERMIT, Scope(sectors=HEALTH, purposes=CARE), ()),
    (DirectiveDecision.PERMIT, Scope(sectors=HEALTH, purposes=CARE), (
        Provision(DirectiveDecision.DENY, Scope(sectors=HEALTH, purposes=CARE,
                                                professional_ids=frozenset({BOWEN["id"]}))),)),
    (DirectiveDecision.DENY, Scope(professional_ids=frozenset({AHMED["id"]})), ()),
    (DirectiveDecision.PERMIT, Scope(professional_ids=frozenset({AHMED["id"]}), purposes=CARE), ()),
    (DirectiveDecision.DENY, Scope(roles=frozenset({"registrar"})), ()),
    (DirectiveDecision.PERMIT, Scope(agency_ids=frozenset({"7A6"})), ()),
    (DirectiveDecision.DENY, Scope(sectors=HEALTH), ()),
]
_children = itertools.count(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path: Path = tmp_path_factory.mktemp("named-props") / "hub.db"
    return Store.open(f"sqlite:///{path}")


def _expected(store: Store, household: str, child: str, now: datetime) -> dict[str, bool]:
    """Who may see the SLT report now, straight from the consent engine."""
    entries = readmodel.child_records(store, household, child)
    report = next(s for s in (shareable_from(e, child) for e in entries)
                  if s is not None and s.record_type == "ReportIssued")
    with store.engine.connect() as conn:
        state = load_states(conn, [child])[child]
    ds, directives = directive_set(state.child, state.directive_rows)  # type: ignore[arg-type]
    (service,) = [t for t in targets_for(team_around(entries), entries, household, child)
                  if t.service == ABUHB_PAEDS["service_name"]]
    out = {"anyone else": decide(report, service, ds, directives, now)[0].permitted}
    for p in service.professionals:
        out[p.professional_id or ""] = decide(report, p, ds, directives, now)[0].permitted
    return out


class ServiceView:
    """What the paediatric service has been told about the report, message by message."""

    def __init__(self) -> None:
        self.copy: frozenset[str] | None = None  # not_for of the usable service copy
        self.own: dict[str, bool] = {}  # a professional's own share (True) or notice (False)
        self.seen: set[str] = set()

    def read(self, items: list[dict[str, Any]], report_id: str) -> None:
        new = [i for i in items if i["delivery_id"] not in self.seen
               and i["content"]["information"].get("report_id") == report_id]
        self.seen |= {i["delivery_id"] for i in new}
        for i in sorted(new, key=lambda i: "professional_id" in i["content"]["recipient"]):  # service first
            c = i["content"]
            who = c["recipient"].get("professional_id")
            if who is None and c["kind"] == "share":  # a service-wide copy: everyone but not_for
                self.copy = frozenset(c.get("not_for_professionals", ()))
                self.own = {p: ok for p, ok in self.own.items() if ok or p in self.copy}
            elif who is None:  # withdraws the service-wide copy; shares addressed to a professional stand
                self.copy = None
            else:
                self.own[who] = c["kind"] == "share"

    def can_see(self, who: str) -> bool:
        if who in self.own:
            return self.own[who]
        return self.copy is not None and who not in self.copy


steps = st.lists(st.tuples(st.sampled_from(["grant", "withdraw"]), st.integers(0, len(POOL) - 1)),
                 min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_what_each_professional_can_see_is_what_consent_permits(store: Store, plan: list[tuple[str, int]]) -> None:
    n = next(_children)
    j = report_not_sent_journey(NOW, seed=500_000 + 7 * n, child_id=f"prop-child-{n}", household_id=f"prop-hh-{n}")
    booked = [InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb-wcp",
                           source_id=f"appt-{who['id']}-{n}", occurred_at=NOW - timedelta(days=2),
                           subject=j.subject, body={"service": ABUHB_PAEDS, "professional": who,
                                                    "start": NOW + timedelta(days=9)})
              for who in (AHMED, BOWEN)]
    feeder = Feeder(store, NOW)
    view = ServiceView()
    active: dict[int, str] = {}
    report_id = f"slt-{j.child_id}"

    def feed(events: list[InboundEvent], at: datetime) -> None:
        feeder.feed(events, at)  # then the agency reads its inbox, as it would between two changes
        items, _ = delivery.inbox(store, "7A6", limit=10_000, now=at)
        view.read(items, report_id)

    feed(j.before_consent + booked, NOW)
    for step, (action, i) in enumerate(plan, start=1):
        at = NOW + timedelta(minutes=10 * step)
        if action == "grant":
            decision, scope, exceptions = POOL[i]
            d = Directive(id=f"prop-{n}-{i}-{step}", child_id=j.child_id, made_by="parent-1",
                          made_by_role=Grantor.PARENT, made_at=at + timedelta(minutes=1), decision=decision,
                          scope=scope, exceptions=exceptions)
            if i in active:  # the same wish made again: the earlier one is withdrawn first
                feed([withdraw_event(active.pop(i), j.subject, at)], at)
            at += timedelta(minutes=1)
            active[i] = d.id
            feed([consent_event(d, j.subject)], at)
        elif i in active:
            feed([withdraw_event(active.pop(i), j.subject, at)], at)
        expected = _expected(store, j.household_id, j.child_id, at)
        seen = {who: view.can_see(who) for who in expected}
        assert seen == expected, f"after step {step} ({plan[:step]})"
