"""What the sharing tables' rows and a recipient's payload look like for a decision or a delivery.

Pure functions: :mod:`hub.sharing.apply` writes what they build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consent import Decision, Outcome, RecipientKind
from consent.reading import ConsentAnswer, Reader, Relation, Visibility, load_read_policy
from hub.sharing.ledger import why
from hub.sharing.model import Shareable, Target, decision_row_id, delivery_row_id, information_summary

SERVICE_NOTICE = ("The family has withdrawn the consent this information was shared under. Do not share it "
                  "further; review your copy under your records policy.")
PROFESSIONAL_NOTICE = ("The family's consent no longer covers the named professional in this notice. Do not show "
                       "this information to them; your service may otherwise keep using its copy.")


@dataclass(frozen=True)
class RowContext:
    """Whose rows these are, when they are written, and what brought the pass about."""

    child_id: str
    household_id: str
    now: datetime
    trigger: str  # event | consent_changed | manual


def payload(s: Shareable, target: Target, decision_id: str, decision: Decision, kind: str, child_id: str,
            delivery_id: str, not_for: list[str] | tuple[str, ...] | None = None) -> str:
    """What the recipient is sent: least data (see :mod:`hub.sharing.delivery`)."""
    recipient: dict[str, Any] = {"kind": target.recipient.kind.value, "agency_id": target.agency_id,
                                 "service": target.service}
    if target.professional_id:
        recipient["professional_id"] = target.professional_id
    body: dict[str, Any] = {
        "delivery_id": delivery_id, "kind": kind, "child_id": child_id, "information": family_safe(s, target),
        "recipient": recipient,
        "decision": {"decision_id": decision_id, "basis": decision.basis.value, "rule_id": decision.rule_id,
                     "ruleset_version": decision.ruleset_version},
    }
    if decision.override_id:
        body["decision"]["override_id"] = decision.override_id
    if not_for and kind == "share":
        body["not_for_professionals"] = sorted(not_for)
    if kind == "withdrawal_notice":
        body["notice"] = PROFESSIONAL_NOTICE if target.professional_id else SERVICE_NOTICE
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def family_safe(s: Shareable, target: Target) -> dict[str, Any]:
    """The information as this recipient is sent it: a family-side copy of an entry that mentions someone other
    than the child keeps only what says it exists (kind, date, service) where the read policy does not show it
    whole to the family (``READ-third-party``); professionals get it whole, marked ``third_party``."""
    info = information_summary(s)
    if not (target.is_family and info.get("third_party")):
        return info
    relation = Relation.SELF if target.recipient.kind is RecipientKind.YOUNG_PERSON else Relation.PARENT
    policy = load_read_policy()
    decision = policy.decide(Reader(relation, ConsentAnswer.NONE, False), policy.facts(
        s.record_type, s.producer_sector, s.info.category.value, held=s.info.held, third_party=True))
    if decision.visibility is Visibility.SHOWN:
        return info
    kept = ("event_id", "version", "record_type", "kind", "category", "issued_at", "producer", "third_party")
    return {**{k: info[k] for k in kept if k in info}, "summary": "details withheld", "visibility": "redacted",
            "reason_code": decision.rule_id, "reason": decision.reason}


def decision_row(s: Shareable, target: Target, d: Decision, t_event: datetime, seq: int,
                 ctx: RowContext) -> dict[str, Any]:
    """A ``share_decisions`` row."""
    rec = target.recipient
    return dict(
        decision_id=decision_row_id(s.event_id, s.version, target.key, seq, ctx.child_id),
        information_id=s.event_id, information_version=s.version, recipient_key=target.key, seq=seq,
        current=True, child_id=ctx.child_id, household_id=ctx.household_id, record_type=s.record_type,
        info_kind=s.info.kind, category=s.info.category.value, producer_agency_id=s.producer_agency_id,
        producer_service=s.producer_service, recipient_kind=rec.kind.value, recipient_agency_id=target.agency_id,
        recipient_service=target.service, recipient_sector=target.sector, purpose=target.purpose.value,
        outcome=d.outcome.value, basis=d.basis.value, rule_id=d.rule_id, ruleset_version=d.ruleset_version,
        reasons=json.dumps(list(d.reasons)), directive_ids=json.dumps(list(d.directive_ids)),
        notify_family=d.notify_family, requires_ig_review=d.requires_ig_review, decided_for=t_event,
        decided_at=ctx.now, trigger=ctx.trigger)


def delivery_row(s: Shareable, target: Target, d: Decision, decision_id: str, kind: str, ctx: RowContext,
                 not_for: tuple[str, ...] = (), round_: int = 0) -> dict[str, Any]:
    """A new ``deliveries`` row: queued when permitted (or a notice), else withheld with why."""
    did = delivery_row_id(s.event_id, s.version, target.key, kind, round_, ctx.child_id)
    now = ctx.now
    permitted = d.outcome is Outcome.PERMIT or kind == "withdrawal_notice"
    return dict(
        delivery_id=did, kind=kind, decision_id=decision_id, information_id=s.event_id,
        information_version=s.version, recipient_key=target.key, recipient_kind=target.recipient.kind.value,
        agency_id=target.agency_id, service=target.service, child_id=ctx.child_id, household_id=ctx.household_id,
        state="queued" if permitted else "withheld", why=None if permitted else why(d),
        channel=None, payload=payload(s, target, decision_id, d, kind, ctx.child_id, did, not_for), attempts=0,
        next_attempt_at=now if permitted else None, last_error=None, receipt=None, created_at=now,
        queued_at=now if permitted else None, delivered_at=None, acknowledged_at=None, closed_at=None,
        escalated_at=None, round=round_)
