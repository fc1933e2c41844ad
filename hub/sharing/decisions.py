"""One child's share decisions and delivery rows, brought up to date with their record and consent.

:func:`sync_child` is the heart of the sharing step (:mod:`hub.sharing.processor` calls it for each
child a run of the change feed touches): decide → plan → apply. For every shareable record × every
recipient that has no decision yet — or every one, after the child's directives changed
(``redecide``) — it asks the consent engine (:func:`decide`), the pure ledger
(:mod:`hub.sharing.ledger`) plans a ``share_decisions`` row when the answer is new or different and
the move of the recipient's ``deliveries`` row to match, and :mod:`hub.sharing.apply` writes it:
``queued`` for a permit, ``withheld`` (why) otherwise, ``cancelled`` when a queued share is no
longer permitted, and a ``withdrawal_notice`` to a recipient who already holds a copy. The unique
delivery key (information, version, recipient, kind, round) makes a retroactive share or a notice
happen exactly once.

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

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy.engine import Connection

from consent import Child, ConsentEngine, Decision, Directive, DirectiveSet, Outcome, Purpose
from hub.sharing.apply import Inserts, apply_plan
from hub.sharing.ledger import ChildCase, Ledger, Plan, plan_child, plan_recall, plan_superseded
from hub.sharing.model import Shareable, Target, targets_for
from hub.sharing.rows import RowContext
from hub.stream.team import team_around


@cache
def engine() -> ConsentEngine:
    return ConsentEngine()


@dataclass
class SharingResult:
    decisions: int = 0
    queued: int = 0
    withheld: int = 0
    cancelled: int = 0
    notices: int = 0
    recalls: int = 0
    children: set[str] = field(default_factory=set)

    @property
    def has_work(self) -> bool:
        return bool(self.queued or self.notices or self.recalls)

    def count(self, plan: Plan) -> None:
        """Add what a plan does to the totals."""
        self.decisions += plan.decisions
        self.queued += plan.queued
        self.withheld += plan.withheld
        self.cancelled += plan.cancelled
        self.notices += plan.notices
        self.recalls += plan.recalls


@dataclass
class ChildState:
    """What is stored for one child: their ledger (deliveries and current decisions) and directives."""

    ledger: Ledger = field(default_factory=Ledger)
    directive_rows: list[Any] = field(default_factory=list)
    child: Child | None = None
    released: set[str] = field(default_factory=set)  # entries whose disclosure hold was released
    override_rows: list[Any] = field(default_factory=list)  # stored safeguarding overrides
    corporate_parent: str | None = None  # a looked-after child's local authority


def decide(info_: Shareable, target: Target, ds: DirectiveSet, directives: dict[str, Directive],
           now: datetime) -> tuple[Decision, datetime]:
    """decide_strictest at the event's time and now; the event time moves to a later permitting directive.

    A safeguarding override in force now for the recipient (R7, purpose safeguarding, the recipient's
    service as the team shows it) permits what the usual decision does not."""
    eng = engine()
    info = info_.info
    at_now = eng.decide(info, target.recipient, target.purpose, now, ds)
    if ds.overrides and at_now.outcome is not Outcome.PERMIT and not target.is_family:
        ov = eng.decide(info, replace(target.recipient, service=target.service), Purpose.SAFEGUARDING, now, ds)
        if ov.override_id is not None:
            return ov, now
    t_event = info.issued_at
    if at_now.outcome is Outcome.PERMIT and at_now.directive_ids:
        made = [directives[i].made_at for i in at_now.directive_ids if i in directives]
        if made:
            t_event = max(t_event, *made)
    t_event = min(t_event, now)
    return eng.decide_strictest(info, target.recipient, target.purpose, ds, at_event_time=t_event,
                                at_delivery_time=now), t_event


def plan_for(child_id: str, household_id: str, entries: list[dict[str, Any]], infos: Sequence[Shareable],
             ledger: Ledger, ds: DirectiveSet, directives: dict[str, Directive], now: datetime, *,
             redecide: bool, targets: list[Target] | None = None) -> Plan:
    """What the child's record needs, as a plan: their recipients decided by the consent engine.

    ``targets``: the recipients, when the caller has them already (else found from ``entries``, the child's
    whole record).
    """
    if targets is None:
        targets = targets_for(team_around(entries), entries, household_id, child_id)
    return plan_child(ChildCase(
        infos=infos, targets=targets, ledger=ledger, decide=lambda s, t: decide(s, t, ds, directives, now),
        redecide=redecide, names_individuals=any(d.names_individuals() for d in directives.values())))


def sync_child(conn: Connection, ctx: RowContext, entries: list[dict[str, Any]], infos: Sequence[Shareable],
               state: ChildState, ds: DirectiveSet | None, directives: dict[str, Directive],
               current_versions: dict[str, int], *, redecide: bool, result: SharingResult,
               inserts: Inserts | None = None, recalled: set[str] | frozenset[str] = frozenset(),
               targets: list[Target] | None = None) -> None:
    """Decide → plan → apply for one child: recalls and superseded shares cancelled, then every record × recipient.

    ``ds`` None (no shareable record): only the cancellations. ``inserts``: where the new rows wait
    for the caller to write them (else they are written at once). ``recalled``: records an undone
    link took out of the child's record (what was shared from them is recalled).
    """
    plan = plan_recall(state.ledger, ctx.child_id, recalled) if recalled else Plan()
    plan += plan_superseded(state.ledger, current_versions, recalled)
    if infos and ds is not None:
        plan += plan_for(ctx.child_id, ctx.household_id, entries, infos, state.ledger, ds, directives, ctx.now,
                         redecide=redecide, targets=targets)
    apply_plan(conn, plan, ctx, inserts)
    result.count(plan)
