"""Properties of the pure sharing ledger (:mod:`hub.sharing.ledger`), with no database.

A child has one report and five recipients: two services (the second with two named professionals)
and the parents. Each example is a run of steps; at each step the consent engine's answers per
recipient are drawn (permit, deny or hold), the ledger plans, the plan is applied to an in-memory
model of the tables (:func:`applied`, what :mod:`hub.sharing.apply` does to the rows the planner
reads), and, when drawn, the deliverer sends what is queued.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from consent import Basis, Category, Decision, Information, Outcome, Purpose, Recipient, RecipientKind, Sector
from hub.sharing.ledger import (
    MAYBE_SENT,
    AddDelivery,
    Cancel,
    ChildCase,
    DecisionRow,
    DeliveryKey,
    DeliveryRow,
    ItemKey,
    Ledger,
    Plan,
    Recall,
    RecordDecision,
    Requeue,
    Rerender,
    RetireDecision,
    Rewithhold,
    plan_child,
    plan_recall,
    plan_superseded,
)
from hub.sharing.model import Shareable, Target, professional_key, service_key

ISSUED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
REPORT = Shareable(
    Information(id="report-1", kind="report", category=Category.GENERAL, agency_id="slt", sector=Sector.HEALTH,
                about="child-1", in_record_of="child-1", issued_at=ISSUED),
    1, "ReportIssued", "slt", "Speech and language", "health", {})


def _service(agency: str, name: str, professionals: tuple[str, ...] = ()) -> Target:
    kind = RecipientKind.AGENCY_PROFESSIONAL
    named = tuple(Target(professional_key(agency, name, p),
                         Recipient(kind, agency_id=agency, sector=Sector.HEALTH, service=name, professional_id=p),
                         Purpose.DIRECT_CARE, agency, name, "health", professional_id=p) for p in professionals)
    return Target(service_key(agency, name), Recipient(kind, agency_id=agency, sector=Sector.HEALTH, service=name),
                  Purpose.DIRECT_CARE, agency, name, "health", professionals=named)


PRODUCER = _service("slt", "Speech and language")
GP = _service("gp", "Surgery")
PAEDS = _service("paeds", "Paediatrics", ("ahmed", "bowen"))
PARENTS = Target("family:parents:hh-1", Recipient(RecipientKind.FAMILY, person_id="parents-hh-1"),
                 Purpose.FAMILY_COPY, None, "Parents / carers", "family")
TARGETS = (PRODUCER, GP, PAEDS, PARENTS)
#: everyone a decision can be asked for (the producing service never is)
DECIDED = (GP, PAEDS, *PAEDS.professionals, PARENTS)
SERVICE_LEVEL = (GP, PAEDS, PARENTS)

Outcomes = Mapping[str, Outcome]
outcome = st.sampled_from([Outcome.PERMIT, Outcome.PERMIT, Outcome.DENY, Outcome.HOLD])
outcomes = st.fixed_dictionaries({t.key: outcome for t in DECIDED})
steps = st.lists(st.tuples(outcomes, st.booleans(), st.sampled_from([False, True, "died"])), min_size=1, max_size=6)


def key_of(t: Target) -> ItemKey:
    return (REPORT.event_id, REPORT.version, t.key)


def case(ledger: Ledger, answers: Outcomes, *, redecide: bool, individuals: bool = False) -> ChildCase:
    def decide(s: Shareable, t: Target) -> tuple[Decision, datetime]:
        o = answers[t.key]
        return Decision(o, Basis.CONSENT if o is Outcome.PERMIT else Basis.NONE, f"R-{o.value}", "test-1",
                        (f"{o.value} for {t.key}",)), ISSUED
    return ChildCase((REPORT,), TARGETS, ledger, decide, redecide=redecide, names_individuals=individuals)


class Tables:
    """The rows a plan writes, as the ledger reads them back; checks what the unique keys would."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.delivery_ids: set[str] = set()
        self.slots: dict[tuple[str, int, str, str, int], str] = {}  # uq_delivery → the row holding it
        self.decision_ids: set[str] = set()

    def apply(self, plan: Plan) -> None:
        self.ledger = applied(self.ledger, plan)
        for a in plan:
            if isinstance(a, AddDelivery):
                assert a.delivery_id not in self.delivery_ids
                self.delivery_ids.add(a.delivery_id)
            if isinstance(a, AddDelivery | Requeue):  # a row queued again may move to a later round
                slot = (*a.key, "share" if isinstance(a, Requeue) else a.kind, a.round)
                self.slots = {k: v for k, v in self.slots.items() if v != a.delivery_id}
                assert slot not in self.slots
                self.slots[slot] = a.delivery_id
            if isinstance(a, RecordDecision):
                assert a.decision_id not in self.decision_ids
                self.decision_ids.add(a.decision_id)

    def deliver(self, died: bool = False) -> None:
        """The deliverer sends every queued share and notice; ``died``: it was killed mid-POST (shares in doubt)."""
        sent = "in_doubt" if died else "delivered"
        self.ledger = Ledger({k: replace(r, state=sent if k[3] == "share" or not died else r.state)
                              if r.state == "queued" else r
                              for k, r in self.ledger.deliveries.items()}, self.ledger.rounds, self.ledger.current)


def applied(ledger: Ledger, plan: Plan) -> Ledger:
    """The ledger after the plan's rows are written (what :mod:`hub.sharing.apply` does, in memory)."""
    rows: dict[DeliveryKey, DeliveryRow] = dict(ledger.deliveries)
    rounds: dict[ItemKey, int] = dict(ledger.rounds)
    current: dict[ItemKey, DecisionRow] = dict(ledger.current)
    for a in plan:
        if isinstance(a, RetireDecision):
            assert current.pop(a.key).decision_id == a.decision_id
        elif isinstance(a, RecordDecision):
            assert a.key not in current
            d = a.decision
            current[a.key] = DecisionRow(a.decision_id, a.seq, d.outcome.value, d.rule_id, a.directive_ids,
                                         d.basis.value, d.ruleset_version)
        elif isinstance(a, AddDelivery):
            rows[(*a.key, a.kind)] = DeliveryRow(a.delivery_id, a.state, a.round)
            rounds[a.key] = max(rounds.get(a.key, -1), a.round)
        elif isinstance(a, Requeue):
            share = rows[(*a.key, "share")]
            assert share.delivery_id == a.delivery_id and share.state in ("withheld", "cancelled")
            rows[(*a.key, "share")] = DeliveryRow(a.delivery_id, "queued", a.round)
            rounds[a.key] = max(rounds[a.key], a.round)
        elif isinstance(a, Cancel):
            if a.in_doubt:
                assert rows[a.key].state in MAYBE_SENT
                rows[a.key] = replace(rows[a.key], state="in_doubt")
            elif rows[a.key].state == "queued":
                rows[a.key] = replace(rows[a.key], state="cancelled")
        elif isinstance(a, Rewithhold):
            assert rows[(*a.key, "share")].state == "withheld"
        elif isinstance(a, Recall):
            assert a.round > rounds.get(a.key, -1) and rows[(*a.key, "share")].delivery_id == a.share_id
            rows[(*a.key, "recall")] = DeliveryRow(a.delivery_id, "delivered" if a.family else "queued", a.round)
            rounds[a.key] = a.round
            if a.family:
                rows[(*a.key, "share")] = replace(rows[(*a.key, "share")], state="recalled")
        else:
            assert isinstance(a, Rerender)
    return Ledger(rows, rounds, current)


def notices(plan: Plan, t: Target) -> int:
    return sum(isinstance(a, AddDelivery) and a.kind == "withdrawal_notice" and a.key == key_of(t) for a in plan)


def shares(plan: Plan, t: Target) -> list[AddDelivery | Requeue]:
    return [a for a in plan if isinstance(a, AddDelivery | Requeue) and a.key == key_of(t)
            and (isinstance(a, Requeue) or a.kind == "share")]


def check_step(before: Ledger, plan: Plan, after: Ledger) -> None:
    latest = dict(before.rounds)  # the highest round of each recipient so far, action by action
    for a in plan:
        if isinstance(a, Requeue) or (isinstance(a, AddDelivery) and a.kind == "share" and a.queued):
            assert a.decision.outcome is Outcome.PERMIT  # nothing is queued without a permit
            notice = before.notice(a.key)
            if notice is not None and notice.state != "cancelled":  # a share after a notice: a later round
                assert a.round > notice.round
        if isinstance(a, AddDelivery):
            assert a.round > latest.get(a.key, -1)  # a new row takes a later round
        if isinstance(a, Requeue):
            assert a.round >= before.deliveries[(*a.key, "share")].round
        if isinstance(a, AddDelivery | Requeue):
            latest[a.key] = max(latest.get(a.key, -1), a.round)
        if isinstance(a, RecordDecision) and a.decision.outcome is not Outcome.PERMIT:
            was = before.current.get(a.key)
            if was is not None and was.outcome == "permit" and before.usable(a.key):
                assert sum(isinstance(n, AddDelivery) and n.kind == "withdrawal_notice" and n.key == a.key
                           for n in plan) == 1  # a withdrawal after delivery: exactly one notice
    for key, r in before.rounds.items():
        assert after.rounds[key] >= r  # rounds only increase
    for key, dec in after.current.items():
        share = after.deliveries.get((*key, "share"))
        if dec.outcome != "permit":
            assert share is None or share.state != "queued"


@settings(max_examples=150, deadline=None)
@given(steps, st.booleans())
def test_a_plan_applied_leaves_nothing_to_plan_and_queues_nothing_refused(
        run: list[tuple[Outcomes, bool, bool | str]], individuals: bool) -> None:
    tables = Tables()
    for n, (answers, redecide, deliver) in enumerate(run):
        before, redecide = tables.ledger, redecide or n == 0
        plan = plan_child(case(before, answers, redecide=redecide, individuals=individuals))
        tables.apply(plan)
        check_step(before, plan, tables.ledger)
        for again in {False, redecide}:  # without a re-decision, what was decided before stands
            assert not plan_child(case(tables.ledger, answers, redecide=again, individuals=individuals))
        if deliver:
            tables.deliver(died=deliver == "died")


@settings(max_examples=80, deadline=None)
@given(outcomes, outcomes, st.sampled_from(SERVICE_LEVEL), st.sampled_from([Outcome.DENY, Outcome.HOLD]),
       st.booleans())
def test_a_withdrawal_after_delivery_sends_exactly_one_notice(
        first: Outcomes, then: Outcomes, who: Target, refusal: Outcome, individuals: bool) -> None:
    tables = Tables()
    tables.apply(plan_child(case(tables.ledger, {**first, who.key: Outcome.PERMIT}, redecide=False,
                                 individuals=individuals)))
    tables.deliver()
    assert tables.ledger.usable(key_of(who))
    plan = plan_child(case(tables.ledger, {**then, who.key: refusal}, redecide=True, individuals=individuals))
    assert notices(plan, who) == 1 and not shares(plan, who)
    tables.apply(plan)
    assert not plan_child(case(tables.ledger, {**then, who.key: refusal}, redecide=True, individuals=individuals))


@settings(max_examples=80, deadline=None)
@given(outcomes, outcomes, st.sampled_from(SERVICE_LEVEL), st.sampled_from([Outcome.DENY, Outcome.HOLD]),
       st.booleans(), st.sampled_from(MAYBE_SENT))
def test_an_in_doubt_share_withdrawn_always_yields_exactly_one_notice(
        first: Outcomes, then: Outcomes, who: Target, refusal: Outcome, individuals: bool, state: str) -> None:
    """The deliverer died mid-POST (or is still waiting): the share may have been received, so a
    withdrawal closes it in doubt (not cancelled, never sent again) and tells the recipient once."""
    tables = Tables()
    tables.apply(plan_child(case(tables.ledger, {**first, who.key: Outcome.PERMIT}, redecide=False,
                                 individuals=individuals)))
    tables.deliver(died=True)
    share = tables.ledger.share(key_of(who))
    assert share is not None and share.state == "in_doubt"
    if state == "sending":
        tables.ledger = Ledger({**tables.ledger.deliveries, (*key_of(who), "share"): replace(share, state=state)},
                               tables.ledger.rounds, tables.ledger.current)
    plan = plan_child(case(tables.ledger, {**then, who.key: refusal}, redecide=True, individuals=individuals))
    assert notices(plan, who) == 1 and not shares(plan, who)
    (closed,) = [a for a in plan if isinstance(a, Cancel) and a.key == (*key_of(who), "share")]
    assert closed.in_doubt
    tables.apply(plan)
    assert tables.ledger.share(key_of(who)) == replace(share, state="in_doubt")
    for redecide in (False, True):
        assert not plan_child(case(tables.ledger, {**then, who.key: refusal}, redecide=redecide,
                                   individuals=individuals))
    again = plan_child(case(tables.ledger, {**then, who.key: Outcome.PERMIT}, redecide=True, individuals=individuals))
    (shared,) = shares(again, who)  # consent given again: shared in a later round than the notice
    assert isinstance(shared, AddDelivery) and shared.queued and notices(again, who) == 0


@settings(max_examples=80, deadline=None)
@given(outcomes, st.sampled_from(SERVICE_LEVEL), st.sampled_from([Outcome.DENY, Outcome.HOLD]), st.booleans(),
       st.integers(1, 3))
def test_consent_given_again_after_a_notice_shares_in_a_new_round(
        others: Outcomes, who: Target, refusal: Outcome, notice_sent: bool, cycles: int) -> None:
    tables = Tables()
    answers = {**others, who.key: Outcome.PERMIT}
    tables.apply(plan_child(case(tables.ledger, answers, redecide=False)))
    for _ in range(cycles):
        tables.deliver()
        tables.apply(plan_child(case(tables.ledger, {**answers, who.key: refusal}, redecide=True)))
        notice = tables.ledger.notice(key_of(who))
        assert notice is not None and notice.state == "queued"
        if notice_sent:
            tables.deliver()
        plan = plan_child(case(tables.ledger, answers, redecide=True))
        (share,) = shares(plan, who)
        assert isinstance(share, AddDelivery) and share.queued and share.round > notice.round
        assert notices(plan, who) == 0
        tables.apply(plan)


@settings(max_examples=30, deadline=None)
@given(outcomes, st.integers(0, 3))
def test_queued_shares_of_a_superseded_or_removed_record_are_cancelled(answers: Outcomes, now_version: int) -> None:
    tables = Tables()
    tables.apply(plan_child(case(tables.ledger, answers, redecide=False)))
    queued = {k for k, r in tables.ledger.deliveries.items() if r.state == "queued"}
    plan = plan_superseded(tables.ledger, {REPORT.event_id: now_version} if now_version else {})
    cancelled = {a.key for a in plan if isinstance(a, Cancel)}
    assert len(plan) == len(cancelled)
    assert cancelled == (queued if now_version != REPORT.version else set())
    tables.apply(plan)
    assert not plan_superseded(tables.ledger, {REPORT.event_id: now_version} if now_version else {})


@settings(max_examples=150, deadline=None)
@given(steps, st.booleans())
def test_an_undone_link_recalls_each_delivered_share_once_and_cancels_queued_ones(
        run: list[tuple[Outcomes, bool, bool | str]], deliver_last: bool) -> None:
    """A link undone as wrong: exactly one recall per share the recipient holds (or may hold), none for
    anything else; every queued delivery is cancelled; planning again adds nothing; a family copy is withdrawn."""
    tables = Tables()
    for i, (answers, deliver, _died) in enumerate(run):
        tables.apply(plan_child(case(tables.ledger, answers, redecide=i > 0)))
        if deliver or (deliver_last and i == len(run) - 1):
            tables.deliver(died=deliver == "died")
    before = tables.ledger
    holders = {k for k in before.rounds if before.usable(k)}
    queued = {k for k, r in before.deliveries.items() if r.state == "queued"}

    plan = plan_recall(before, "child-1", {REPORT.event_id})

    recalls = [a for a in plan if isinstance(a, Recall)]
    assert sorted(a.key for a in recalls) == sorted(holders)  # one per held copy, no more
    assert {a.key for a in plan if isinstance(a, Cancel) and not a.in_doubt} == queued
    assert all(a.family == a.key[2].startswith("family:") for a in recalls)
    assert not [a for a in plan if isinstance(a, AddDelivery | Requeue | RecordDecision)]  # nothing shared anew
    tables.apply(plan)
    after = tables.ledger
    assert not [k for k in after.rounds if after.usable(k)]
    assert not [r for k, r in after.deliveries.items() if r.state == "queued" and k[3] != "recall"]
    for a in recalls:
        if a.family:
            assert after.deliveries[(*a.key, "share")].state == "recalled"
    assert not plan_recall(after, "child-1", {REPORT.event_id})  # idempotent: a pass repeated recalls nothing
    assert not [a for a in plan_superseded(after, {}, {REPORT.event_id})]


def test_a_recall_is_kept_apart_per_child() -> None:
    """The same record shared for one child and, after a re-link, for another: their rows never share an id."""
    sibling = replace(REPORT, info=replace(REPORT.info, about="child-2", in_record_of="child-2"))
    permit = Decision(Outcome.PERMIT, Basis.CONSENT, "R-permit", "test-1", ())
    first = AddDelivery(REPORT, GP, permit, "d-1", "share", 0)
    second = AddDelivery(sibling, GP, permit, "d-2", "share", 0)
    assert first.key == second.key and first.delivery_id != second.delivery_id
    assert RecordDecision(REPORT, GP, permit, ISSUED, 0).decision_id != \
        RecordDecision(sibling, GP, permit, ISSUED, 0).decision_id
