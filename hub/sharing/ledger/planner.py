"""Planning one child's sharing pass: the decisions and delivery moves their record and consent call for.

For every shareable record × every recipient that has no decision yet — or every one, when the
child's directives changed (``redecide``) — the consent engine is asked (through ``ChildCase.decide``)
and the plan records the decision when it is new or different, and moves the recipient's delivery to
match: a share ``queued`` for a permit or ``withheld`` otherwise, a queued share ``cancelled`` when
no longer permitted, a withheld or cancelled one queued again when permitted, and a
``withdrawal_notice`` (next round) to a recipient who holds a usable copy — or may hold one: a share
whose POST went out with no answer yet (``sending``) or ever (``in_doubt``, its deliverer died) is
not cancelled but closed in doubt, and the recipient is told as if it had been delivered. A copy the recipient was
told to stop using is shared again in a later round when consent is given again.

Named professionals (see :mod:`hub.sharing.decisions`) are decided apart only when some directive
names a professional or a role, or once did; a professional gets rows of their own only where their
decision differs from their service's, or once has.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from consent import Basis, Decision, Outcome
from hub.sharing.ledger.actions import (
    NOTICE,
    RECALL,
    RECALL_REASON,
    SHARE,
    Action,
    AddDelivery,
    Cancel,
    Plan,
    Recall,
    RecordDecision,
    Requeue,
    Rerender,
    RetireDecision,
    Rewithhold,
    directive_ids_json,
    why,
)
from hub.sharing.ledger.values import MAYBE_SENT, DecisionRow, ItemKey, Ledger
from hub.sharing.model import Shareable, Target

#: the consent engine's decision for one record and recipient, with the time its event side was taken at
Decide = Callable[[Shareable, Target], tuple[Decision, datetime]]


@dataclass(frozen=True)
class ChildCase:
    """Everything a child's pass is planned from."""

    infos: Sequence[Shareable]
    targets: Sequence[Target]  # every recipient; the producing service of each record is skipped
    ledger: Ledger
    decide: Decide
    redecide: bool = False  # the child's directives changed: decide every recipient again
    names_individuals: bool = False  # some directive names a professional or a role


def service_key_of(professional_key: str) -> str:
    """``professional:<agency>:<service>:<id>`` → ``service:<agency>:<service>``."""
    return "service:" + professional_key.removeprefix("professional:").rsplit(":", 1)[0]


def plan_superseded(ledger: Ledger, current_versions: Mapping[str, int],
                    recalled: Collection[str] = frozenset()) -> Plan:
    """Cancel queued deliveries of superseded versions, or of records no longer in the child's record.

    ``current_versions``: information id → its version in the child's record now (0 or absent: gone).
    ``recalled``: information ids :func:`plan_recall` takes care of (left out here).
    """
    actions: list[Action] = []
    for key, row in ledger.deliveries.items():
        if row.state != "queued" or key[0] in recalled or key[3] == RECALL:
            continue  # a recall is never cancelled
        iid, version = key[0], key[1]
        reason = None
        if not current_versions.get(iid):
            reason = "the record is no longer in this child's record (entered in error or unlinked)"
        elif version < current_versions[iid]:
            reason = f"superseded by version {current_versions[iid]}"
        if reason:
            actions.append(Cancel(key, row.delivery_id, reason))
    return Plan.of(actions)


def plan_recall(ledger: Ledger, child_id: str, recalled: Collection[str]) -> Plan:
    """Recall what was shared from records a link undone as wrong took out of the child's record.

    ``recalled``: information ids that left the child's record with an undone link (and are still live
    records, elsewhere or parked). For each of their information versions and recipients: a queued
    share is cancelled; a share that was delivered — or may have been (:data:`MAYBE_SENT`, then also
    closed in doubt) — gets exactly one recall (:class:`Recall`, next round). Queued notices are
    cancelled: the recall says more.
    """
    actions: list[Action] = []
    rounds = dict(ledger.rounds)
    for key, row in sorted(ledger.deliveries.items()):
        if key[0] not in recalled or key[3] == RECALL:
            continue
        item: ItemKey = (key[0], key[1], key[2])
        if row.state == "queued":
            actions.append(Cancel(key, row.delivery_id, RECALL_REASON))
            continue
        if key[3] != SHARE or not ledger.usable(item):
            continue
        if row.state in MAYBE_SENT:
            actions.append(Cancel(key, row.delivery_id, RECALL_REASON, in_doubt=True))
        rounds[item] = rounds.get(item, -1) + 1
        actions.append(Recall(item, child_id, row.delivery_id, rounds[item], key[2].startswith("family:")))
    return Plan.of(actions)


def plan_child(case: ChildCase) -> Plan:
    """The actions that bring the child's decisions and deliveries up to date with their record and consent."""
    planner = _Planner(case)
    for s in case.infos:
        for t in case.targets:
            if t.agency_id == s.producer_agency_id and t.service == s.producer_service:
                continue  # the producing service itself
            if s.addressed_to is not None and t.key != s.addressed_to:
                continue  # a referral goes to the service it names alone
            planner.settle(s, t)
    return Plan.of(planner.actions)


def _changed(d: Decision, cur: DecisionRow) -> bool:
    return not (d.outcome.value == cur.outcome and d.rule_id == cur.rule_id
                and directive_ids_json(d) == cur.directive_ids)


class _Planner:
    """One child's pass over the ledger: the actions so far, with the rounds and outcomes they leave."""

    def __init__(self, case: ChildCase) -> None:
        self.case, self.ledger = case, case.ledger
        #: decide named professionals apart: some directive names a professional or a role, or once did
        self.individual = case.names_individuals or any(k[2].startswith("professional:") for k in self.ledger.current)
        self.actions: list[Action] = []
        self.rounds: dict[ItemKey, int] = dict(self.ledger.rounds)
        #: outcome of each (information, version, recipient key) as this pass leaves it
        self.outcome: dict[ItemKey, str] = {k: r.outcome for k, r in self.ledger.current.items()}

    def not_for(self, s: Shareable, t: Target) -> tuple[str, ...]:
        return tuple(p.professional_id or "" for p in t.professionals
                     if self.outcome.get((s.event_id, s.version, p.key), "permit") != "permit")

    def settle(self, s: Shareable, t: Target) -> None:
        """One recipient: decide when needed, record what changed, re-address the share when only people did."""
        key = (s.event_id, s.version, t.key)
        cur = self.ledger.current.get(key)
        decided = self.case.decide(s, t) if cur is None or self.case.redecide else None
        service_outcome = decided[0].outcome.value if decided is not None else cur.outcome if cur else ""
        people_changed = False
        if t.professionals and self.individual:
            people_changed = self.professionals(s, t, service_outcome)
        rendered = False
        if decided is not None:
            d, t_event = decided
            if cur is None:
                self._first(s, t, d, t_event)
                rendered = True
            else:
                rendered = self._redecided(s, t, d, t_event, cur)
        if people_changed and not rendered:
            self._rerender(s, t)

    def professionals(self, s: Shareable, t: Target, service_outcome: str) -> bool:
        """Decide the service's named professionals; True when a professional's rows changed."""
        changed = False
        service_holds = self.ledger.usable((s.event_id, s.version, t.key))
        for p in t.professionals:
            cur = self.ledger.current.get((s.event_id, s.version, p.key))
            if cur is not None and not self.case.redecide:
                continue
            d, t_event = self.case.decide(s, p)
            if cur is None:
                if d.outcome.value == service_outcome:
                    continue  # the service's decision stands for them
                decision_id = self._first(s, p, d, t_event)
                if d.outcome is not Outcome.PERMIT and service_holds:
                    self._add(s, p, d, decision_id, NOTICE)
                changed = True
                continue
            if self._redecided(s, p, d, t_event, cur):
                changed = True
        return changed

    def _record(self, s: Shareable, t: Target, d: Decision, t_event: datetime, seq: int) -> str:
        rec = RecordDecision(s, t, d, t_event, seq)
        self.actions.append(rec)
        self.outcome[rec.key] = d.outcome.value
        return rec.decision_id

    def _first(self, s: Shareable, t: Target, d: Decision, t_event: datetime) -> str:
        """A first decision, and the recipient's first share (queued or withheld) unless one exists."""
        decision_id = self._record(s, t, d, t_event, 0)
        if (s.event_id, s.version, t.key, SHARE) not in self.ledger.deliveries:
            self._add(s, t, d, decision_id, SHARE)
        return decision_id

    def _add(self, s: Shareable, t: Target, d: Decision, decision_id: str, kind: str) -> None:
        """A new delivery row in the next round of this information version and recipient."""
        key = (s.event_id, s.version, t.key)
        round_ = self.rounds[key] = self.rounds.get(key, -1) + 1
        self.actions.append(AddDelivery(s, t, d, decision_id, kind, round_, self.not_for(s, t)))

    def _redecided(self, s: Shareable, t: Target, d: Decision, t_event: datetime, cur: DecisionRow) -> bool:
        """Record a re-decision when it differs from the current one, and move the delivery; True if it did."""
        if not _changed(d, cur):
            return False
        self.actions.append(RetireDecision((s.event_id, s.version, t.key), cur.decision_id))
        decision_id = self._record(s, t, d, t_event, cur.seq + 1)
        self._follow(s, t, d, decision_id, cur.outcome)
        return True

    def _rerender(self, s: Shareable, t: Target) -> None:
        key = (s.event_id, s.version, t.key)
        share = self.ledger.share(key)
        if share is None or share.state != "queued":
            return
        cur = self.ledger.current[key]
        d = Decision(Outcome(cur.outcome), Basis(cur.basis), cur.rule_id, cur.ruleset_version, ())
        self.actions.append(Rerender(s, t, d, cur.decision_id, share.delivery_id, self.not_for(s, t)))

    def _follow(self, s: Shareable, t: Target, d: Decision, decision_id: str, was: str) -> None:
        """Move the share's delivery after a re-decision.

        Permitted: a withheld or cancelled share is queued again; a copy the recipient was told to
        stop using is shared again (next round). Refused: a queued share is cancelled, and a recipient
        holding a usable copy gets a withdrawal notice (next round).
        """
        key = (s.event_id, s.version, t.key)
        share, notice = self.ledger.share(key), self.ledger.notice(key)
        if d.outcome is Outcome.PERMIT:
            told_to_stop = share is not None and notice is not None and notice.round > share.round
            if share is None or (share.state in ("delivered", "acknowledged", *MAYBE_SENT) and told_to_stop):
                self._add(s, t, d, decision_id, SHARE)
            elif share.state in ("withheld", "cancelled"):
                round_ = share.round
                if told_to_stop:  # queued after a notice: a later round
                    assert notice is not None
                    round_ = self.rounds[key] = self.rounds.get(key, notice.round) + 1
                self.actions.append(Requeue(s, t, d, decision_id, share.delivery_id, round_, self.not_for(s, t)))
            return
        holds = self._holds_copy(s, t, was)
        if share is None:
            self._add(s, t, d, decision_id, SHARE)
        elif share.state == "queued":
            self.actions.append(Cancel((*key, SHARE), share.delivery_id, why(d), decision_id))
        elif share.state == "withheld":
            self.actions.append(Rewithhold(key, share.delivery_id, why(d), decision_id))
        elif share.state in MAYBE_SENT and holds:  # may have been received: not sent again, and told
            self.actions.append(Cancel((*key, SHARE), share.delivery_id, why(d), decision_id, in_doubt=True))
        if holds:
            self._add(s, t, d, decision_id, NOTICE)

    def _holds_copy(self, s: Shareable, t: Target, was: str) -> bool:
        """Does the recipient hold a usable copy (so a refusal needs a notice)?"""
        if self.ledger.usable((s.event_id, s.version, t.key)):
            return True
        if t.professional_id is None or was != "permit":
            return False
        # a named professional permitted until now can see the copy their service holds
        return self.ledger.usable((s.event_id, s.version, service_key_of(t.key)))
