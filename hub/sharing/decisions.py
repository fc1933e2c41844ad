"""One child's share decisions and delivery rows, brought up to date with their record and consent.

:func:`sync_child` is the heart of the sharing step (:mod:`hub.sharing.processor` calls it for each
child a run of the change feed touches). For every shareable record × every recipient that has no
decision yet — or every one, after the child's directives changed (``redecide``) — it asks the
consent engine, writes a ``share_decisions`` row when the answer is new or different, and moves the
recipient's ``deliveries`` row to match: ``queued`` for a permit, ``withheld`` (why) otherwise,
``cancelled`` when a queued share is no longer permitted, and a ``withdrawal_notice`` to a
recipient who already holds a copy. The unique delivery key (information, version, recipient, kind)
makes a retroactive share or a notice happen exactly once.

Named professionals
    A service's decision stands for every professional in it, unless the family's directives decide
    a named professional (or a role) differently. The child's directives are checked once: when
    none is scoped to a professional or a role, professionals are not decided apart (and cost
    nothing). Otherwise each named professional of the service (``Target.professionals``) is
    decided too, and where the answer differs from their service's — or once it has differed — the
    professional gets decision and delivery rows of their own under
    ``professional:<agency>:<service>:<id>``, following the same state machine:

    * service permitted, professional refused: the service's share carries
      ``not_for_professionals`` (the ids it must not be shown to); the professional's own share row
      is ``withheld`` (why). If the service already holds a copy, the professional's key gets a
      ``withdrawal_notice`` (once) telling the service not to show it to them.
    * service refused, professional permitted ("only to Dr X"): a share addressed to that
      professional alone (``recipient.professional_id``) is queued to the service's channel.
    * a professional decision changing later is followed like any other: queued → cancelled,
      withheld → queued, delivered → withdrawal notice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from consent import Basis, Child, ConsentEngine, Decision, Directive, DirectiveSet, Outcome
from hub.db.schema import deliveries, share_decisions
from hub.sharing.model import Shareable, Target, delivery_row_id, information_summary, stable_id, targets_for
from hub.stream.team import TeamMember, team_around

SD = share_decisions.c
DL = deliveries.c
_ENGINE: ConsentEngine | None = None
SERVICE_NOTICE = ("The family has withdrawn the consent this information was shared under. Do not share it "
                  "further; review your copy under your records policy.")
PROFESSIONAL_NOTICE = ("The family's consent no longer covers the named professional in this notice. Do not show "
                       "this information to them; your service may otherwise keep using its copy.")


def engine() -> ConsentEngine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = ConsentEngine()
    return _ENGINE


@dataclass
class SharingResult:
    decisions: int = 0
    queued: int = 0
    withheld: int = 0
    cancelled: int = 0
    notices: int = 0
    children: set[str] = field(default_factory=set)

    @property
    def has_work(self) -> bool:
        return bool(self.queued or self.notices)


@dataclass
class ChildState:
    """What is stored for one child: deliveries, current decisions and directives (loaded together)."""

    deliveries: dict[tuple[str, int, str, str], Any] = field(default_factory=dict)  # the latest round of each kind
    rounds: dict[tuple[str, int, str], int] = field(default_factory=dict)  # highest round of either kind
    current: dict[tuple[str, int, str], Any] = field(default_factory=dict)
    directive_rows: list[Any] = field(default_factory=list)
    child: Child | None = None


def decide(info_: Shareable, target: Target, ds: DirectiveSet, directives: dict[str, Directive],
           now: datetime) -> tuple[Decision, datetime]:
    """decide_strictest at the event's time and now; the event time moves to a later permitting directive."""
    eng = engine()
    info = info_.info
    at_now = eng.decide(info, target.recipient, target.purpose, now, ds)
    t_event = info.issued_at
    if at_now.outcome is Outcome.PERMIT and at_now.directive_ids:
        made = [directives[i].made_at for i in at_now.directive_ids if i in directives]
        if made:
            t_event = max(t_event, *made)
    t_event = min(t_event, now)
    return eng.decide_strictest(info, target.recipient, target.purpose, ds, at_event_time=t_event,
                                at_delivery_time=now), t_event


def payload(s: Shareable, target: Target, decision_id: str, decision: Decision, kind: str, child_id: str,
            delivery_id: str, not_for: list[str] | None = None) -> str:
    """What the recipient is sent: least data (see :mod:`hub.sharing.delivery`)."""
    recipient: dict[str, Any] = {"kind": target.recipient.kind.value, "agency_id": target.agency_id,
                                 "service": target.service}
    if target.professional_id:
        recipient["professional_id"] = target.professional_id
    body: dict[str, Any] = {
        "delivery_id": delivery_id, "kind": kind, "child_id": child_id, "information": information_summary(s),
        "recipient": recipient,
        "decision": {"decision_id": decision_id, "basis": decision.basis.value, "rule_id": decision.rule_id,
                     "ruleset_version": decision.ruleset_version},
    }
    if not_for and kind == "share":
        body["not_for_professionals"] = sorted(not_for)
    if kind == "withdrawal_notice":
        body["notice"] = PROFESSIONAL_NOTICE if target.professional_id else SERVICE_NOTICE
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def _decision_row(s: Shareable, target: Target, d: Decision, t_event: datetime, seq: int, child_id: str,
                  household_id: str, now: datetime, trigger: str) -> dict[str, Any]:
    rec = target.recipient
    return dict(
        decision_id=stable_id("decision", s.event_id, s.version, target.key, seq),
        information_id=s.event_id, information_version=s.version, recipient_key=target.key, seq=seq,
        current=True, child_id=child_id, household_id=household_id, record_type=s.record_type,
        info_kind=s.info.kind, category=s.info.category.value, producer_agency_id=s.producer_agency_id,
        producer_service=s.producer_service, recipient_kind=rec.kind.value, recipient_agency_id=target.agency_id,
        recipient_service=target.service, recipient_sector=target.sector, purpose=target.purpose.value,
        outcome=d.outcome.value, basis=d.basis.value, rule_id=d.rule_id, ruleset_version=d.ruleset_version,
        reasons=json.dumps(list(d.reasons)), directive_ids=json.dumps(list(d.directive_ids)),
        notify_family=d.notify_family, requires_ig_review=d.requires_ig_review, decided_for=t_event,
        decided_at=now, trigger=trigger)


def why(d: Decision) -> str:
    return f"{d.outcome.value} ({d.rule_id}): " + " ".join(d.reasons)


def delivery_id(s: Shareable, target: Target, kind: str, round_: int) -> str:
    return delivery_row_id(s.event_id, s.version, target.key, kind, round_)


def new_delivery(s: Shareable, target: Target, d: Decision, decision_id: str, kind: str, child_id: str,
                 household_id: str, now: datetime, not_for: list[str] | None = None, round_: int = 0) -> dict[str, Any]:
    did = delivery_id(s, target, kind, round_)
    permitted = d.outcome is Outcome.PERMIT or kind == "withdrawal_notice"
    return dict(
        delivery_id=did, kind=kind, decision_id=decision_id, information_id=s.event_id,
        information_version=s.version, recipient_key=target.key, recipient_kind=target.recipient.kind.value,
        agency_id=target.agency_id, service=target.service, child_id=child_id, household_id=household_id,
        state="queued" if permitted else "withheld", why=None if permitted else why(d),
        channel=None, payload=payload(s, target, decision_id, d, kind, child_id, did, not_for), attempts=0,
        next_attempt_at=now if permitted else None, last_error=None, receipt=None, created_at=now,
        queued_at=now if permitted else None, delivered_at=None, acknowledged_at=None, closed_at=None,
        escalated_at=None, round=round_)


class _Sync:
    """One child's pass: the decisions and delivery rows it adds, and the updates it runs at once."""

    def __init__(self, conn: Connection, child_id: str, household_id: str, state: ChildState, ds: DirectiveSet,
                 directives: dict[str, Directive], now: datetime, redecide: bool, trigger: str,
                 result: SharingResult) -> None:
        self.conn, self.child_id, self.household_id, self.state = conn, child_id, household_id, state
        self.ds, self.directives, self.now, self.redecide, self.trigger = ds, directives, now, redecide, trigger
        self.result = result
        #: decide named professionals apart: some directive names a professional or a role, or once did
        self.individual = any(d.names_individuals() for d in directives.values()) or \
            any(k[2].startswith("professional:") for k in state.current)
        self.new_decisions: list[dict[str, Any]] = []
        self.new_deliveries: list[dict[str, Any]] = []
        #: outcome of each (information, version, recipient key) as this pass leaves it
        self.outcome: dict[tuple[str, int, str], str] = {k: r.outcome for k, r in state.current.items()}

    # -- the named professionals of a service
    def not_for(self, s: Shareable, t: Target) -> list[str]:
        return [p.professional_id or "" for p in t.professionals
                if self.outcome.get((s.event_id, s.version, p.key), "permit") != "permit"]

    def professionals(self, s: Shareable, t: Target, service_outcome: str) -> bool:
        """Decide the service's named professionals; True when a professional's rows changed."""
        changed = False
        service_holds = self._usable(s, t)
        for p in t.professionals:
            key = (s.event_id, s.version, p.key)
            cur = self.state.current.get(key)
            if cur is not None and not self.redecide:
                continue
            d, t_event = decide(s, p, self.ds, self.directives, self.now)
            if cur is None:
                if d.outcome.value == service_outcome:
                    continue  # the service's decision stands for them
                row = _decision_row(s, p, d, t_event, 0, self.child_id, self.household_id, self.now, self.trigger)
                self.new_decisions.append(row)
                self.outcome[key] = d.outcome.value
                self._first_delivery(s, p, d, row["decision_id"])
                if d.outcome is not Outcome.PERMIT and service_holds:
                    self._add(s, p, d, row["decision_id"], "withdrawal_notice")
                    self.result.notices += 1
                changed = True
                continue
            if self._redecided(s, p, d, t_event, cur):
                changed = True
        return changed

    # -- one recipient
    def settle(self, s: Shareable, t: Target) -> None:
        key = (s.event_id, s.version, t.key)
        cur = self.state.current.get(key)
        decided: tuple[Decision, datetime] | None = None
        if cur is None or self.redecide:
            decided = decide(s, t, self.ds, self.directives, self.now)
        service_outcome = decided[0].outcome.value if decided is not None else str(cur.outcome) if cur else ""
        people_changed = False
        if t.professionals and self.individual:
            people_changed = self.professionals(s, t, service_outcome)
        rendered = False
        if decided is not None:
            d, t_event = decided
            if cur is None:
                row = _decision_row(s, t, d, t_event, 0, self.child_id, self.household_id, self.now, self.trigger)
                self.new_decisions.append(row)
                self.outcome[key] = d.outcome.value
                self._first_delivery(s, t, d, row["decision_id"])
                rendered = True
            else:
                rendered = self._redecided(s, t, d, t_event, cur)
        if people_changed and not rendered:
            self._rerender(s, t)

    def _first_delivery(self, s: Shareable, t: Target, d: Decision, decision_id: str) -> None:
        key = (s.event_id, s.version, t.key, "share")
        if key in self.state.deliveries:
            return
        dl = self._add(s, t, d, decision_id, "share")
        self.result.queued += dl["state"] == "queued"
        self.result.withheld += dl["state"] == "withheld"

    def _add(self, s: Shareable, t: Target, d: Decision, decision_id: str, kind: str) -> dict[str, Any]:
        """A new delivery row in the next round of this information version and recipient."""
        key = (s.event_id, s.version, t.key)
        round_ = self.state.rounds.get(key, -1) + 1
        self.state.rounds[key] = round_
        dl = new_delivery(s, t, d, decision_id, kind, self.child_id, self.household_id, self.now,
                          self.not_for(s, t), round_)
        self.new_deliveries.append(dl)
        return dl

    def _usable(self, s: Shareable, t: Target) -> bool:
        """The recipient holds a copy it has not been told to stop using."""
        share = self.state.deliveries.get((s.event_id, s.version, t.key, "share"))
        notice = self.state.deliveries.get((s.event_id, s.version, t.key, "withdrawal_notice"))
        return share is not None and share.state in ("delivered", "acknowledged") and \
            (notice is None or notice.round < share.round)

    def _redecided(self, s: Shareable, t: Target, d: Decision, t_event: datetime, cur: Any) -> bool:
        """Record a re-decision when it differs from the current one, and move the delivery; True if it did."""
        if d.outcome.value == cur.outcome and d.rule_id == cur.rule_id \
                and json.dumps(list(d.directive_ids)) == cur.directive_ids:
            return False
        row = _decision_row(s, t, d, t_event, cur.seq + 1, self.child_id, self.household_id, self.now, self.trigger)
        self.conn.execute(share_decisions.update().where(SD.decision_id == cur.decision_id).values(current=False))
        self.new_decisions.append(row)
        self.outcome[(s.event_id, s.version, t.key)] = d.outcome.value
        self._follow(s, t, d, row["decision_id"], cur.outcome)
        return True

    def _rerender(self, s: Shareable, t: Target) -> None:
        """A queued service share whose named-professional exceptions changed: send the new list."""
        share = self.state.deliveries.get((s.event_id, s.version, t.key, "share"))
        if share is None or share.state != "queued":
            return
        cur = self.state.current[(s.event_id, s.version, t.key)]
        d = Decision(Outcome(cur.outcome), Basis(cur.basis), cur.rule_id, cur.ruleset_version, ())
        self.conn.execute(deliveries.update().where(DL.delivery_id == share.delivery_id, DL.state == "queued").values(
            payload=payload(s, t, cur.decision_id, d, "share", self.child_id, share.delivery_id,
                            self.not_for(s, t))))

    def _follow(self, s: Shareable, t: Target, d: Decision, decision_id: str, was: str) -> None:
        """Move the share's delivery after a re-decision.

        Permitted: a withheld or cancelled share is queued again; a copy the recipient was told to
        stop using is shared again (next round). Refused: a queued share is cancelled, and a recipient
        holding a usable copy gets a withdrawal notice (next round).
        """
        existing = self.state.deliveries
        share = existing.get((s.event_id, s.version, t.key, "share"))
        notice = existing.get((s.event_id, s.version, t.key, "withdrawal_notice"))
        result, now = self.result, self.now
        if d.outcome is Outcome.PERMIT:
            if share is None or (share.state in ("delivered", "acknowledged") and notice is not None
                                 and notice.round > share.round):
                self._add(s, t, d, decision_id, "share")
                result.queued += 1
            elif share.state in ("withheld", "cancelled"):
                key = (s.event_id, s.version, t.key)
                round_ = share.round
                if notice is not None and notice.round > share.round:  # queued after a notice: a later round
                    round_ = self.state.rounds[key] = self.state.rounds.get(key, notice.round) + 1
                self.conn.execute(deliveries.update().where(
                    DL.delivery_id == share.delivery_id, DL.state.in_(("withheld", "cancelled"))).values(
                    state="queued", why=None, decision_id=decision_id, queued_at=now, next_attempt_at=now,
                    closed_at=None, attempts=0, last_error=None, round=round_,
                    payload=payload(s, t, decision_id, d, "share", self.child_id, share.delivery_id,
                                    self.not_for(s, t))))
                result.queued += 1
            return
        holds = self._holds_copy(s, t, was)
        if share is None:
            self._add(s, t, d, decision_id, "share")
            result.withheld += 1
        elif share.state == "queued":
            self.conn.execute(deliveries.update().where(DL.delivery_id == share.delivery_id, DL.state == "queued")
                              .values(state="cancelled", why=why(d), closed_at=now, decision_id=decision_id))
            result.cancelled += 1
        elif share.state == "withheld":
            self.conn.execute(deliveries.update().where(DL.delivery_id == share.delivery_id).values(
                why=why(d), decision_id=decision_id))
        if holds:
            self._add(s, t, d, decision_id, "withdrawal_notice")
            result.notices += 1

    def _holds_copy(self, s: Shareable, t: Target, was: str) -> bool:
        """Does the recipient hold a usable copy (so a refusal needs a notice)?"""
        if self._usable(s, t):
            return True
        if t.professional_id is None or was != "permit":
            return False
        # a named professional permitted until now can see the copy their service holds
        service = replace(t, key=service_key_of(t.key), professional_id=None)
        return self._usable(s, service)


def service_key_of(professional_key: str) -> str:
    """``professional:<agency>:<service>:<id>`` → ``service:<agency>:<service>``."""
    return "service:" + professional_key.removeprefix("professional:").rsplit(":", 1)[0]


def sync_child(conn: Connection, child_id: str, household_id: str, entries: list[dict[str, Any]],
               infos: list[Shareable], state: ChildState, ds: DirectiveSet, directives: dict[str, Directive],
               now: datetime, *, redecide: bool, trigger: str, result: SharingResult,
               team: list[TeamMember] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Decide what the child's record needs; returns the decision and delivery rows to insert.

    ``team``: the team around the child from ``entries``, when the caller has it already.
    """
    sync = _Sync(conn, child_id, household_id, state, ds, directives, now, redecide, trigger, result)
    targets = targets_for(team_around(entries) if team is None else team, entries, household_id, child_id)
    for s in infos:
        for t in targets:
            if t.agency_id == s.producer_agency_id and t.service == s.producer_service:
                continue  # the producing service itself
            sync.settle(s, t)
    result.decisions += len(sync.new_decisions)
    return sync.new_decisions, sync.new_deliveries
