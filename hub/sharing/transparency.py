"""The family's own view of where their children's reports went: in plain words, without internal ids.

For each report a service received: the report (its kind, title and the service that wrote it), the
service and organisation that received it, the professional it was addressed to where there was one,
when, on what basis (the family's consent, a legal duty, a safeguarding decision, their own right of
access, care inside the service that wrote it) and who read it (agency inbox reads, audited per
household). Safeguarding overrides are listed too, unless the override says telling the family would put
the child at risk: then neither the override nor what it shared is shown here (IG sees why, sealed in
the override's audit record).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from hub.db.schema import deliveries, safeguarding_overrides
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc
from hub.governance.audit import AuditLog
from hub.sharing import payloads

DL = deliveries.c
OV = safeguarding_overrides.c
BASIS_WORDS = {
    "consent": "your consent",
    "statutory_duty": "a legal duty to share it (you are told each time)",
    "safeguarding": "a safeguarding decision to keep your child safe, made without consent",
    "right_of_access": "your right to see your child's information",
    "direct_care": "care inside the organisation that wrote it",
}
RECEIVED = ("delivered", "acknowledged")


def _when(value: Any) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def _report(info: dict[str, Any]) -> str:
    kind = str(info.get("kind") or "record").replace("_", " ")
    title = info.get("title")
    service = (info.get("producer") or {}).get("service_name") or "a service"
    return f"{title} ({kind} from {service})" if title else f"A {kind} from {service}"


def _reads(store: Store, household_id: str) -> dict[str, list[dict[str, Any]]]:
    """Agency inbox reads of this household's shares, by delivery."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in AuditLog(store).records(household=household_id, actions=["read_report"]):
        detail = r.detail if isinstance(r.detail, dict) else {}
        for did in detail.get("deliveries") or ():
            out[str(did)].append({"who": r.actor, "as": "professional" if r.actor_role == "agency" else r.actor_role,
                                  "when": r.recorded_at.isoformat()})
    return out


#: of (child, information id) pairs, those the reader may see (the read policy: hub.sharing.visibility)
Visible = Callable[[list[tuple[str, str]]], set[tuple[str, str]]]


def _where(data_ref: str | None) -> str:
    """What a read looked at, in the family's words."""
    if data_ref and "/agencies/" in data_ref:
        return "the team around your child (an agency in the team)"
    return "your family's timeline"


def family_view(store: Store, household_id: str, agency_names: dict[str, str] | None = None,
                visible: Visible | None = None) -> dict[str, Any]:
    """Where the household's reports went, and the safeguarding decisions the family may be told about;
    with ``visible``, only reports about children and entries the reader may see."""
    names = agency_names or {}
    with store.engine.connect() as conn:
        hidden = {r.override_id for r in conn.execute(sa.select(OV.override_id).where(
            OV.household_id == household_id, OV.tell_family.is_(False)))}
        told = conn.execute(sa.select(safeguarding_overrides).where(
            OV.household_id == household_id, OV.tell_family.is_(True)).order_by(OV.created_at)).all()
        rows = conn.execute(sa.select(deliveries).where(
            DL.household_id == household_id, DL.kind == "share", DL.recipient_kind.notin_(("family", "young_person")),
            DL.state.in_(("queued", "sending", "in_doubt", *RECEIVED))).order_by(DL.created_at)).all()
    reads = _reads(store, household_id)
    if visible is not None:
        allowed = visible([(r.child_id, r.information_id) for r in rows])
        rows = [r for r in rows if (r.child_id, r.information_id) in allowed]
    shared = []
    seal = sealer(store)
    for r in rows:
        body = payloads.body(seal, r.delivery_id, r.payload)
        decision = body.get("decision") or {}
        if decision.get("override_id") in hidden:
            continue
        recipient = body.get("recipient") or {}
        agency = recipient.get("agency_id") or ""
        shared.append({
            "report": _report(body.get("information") or {}),
            "issued_at": (body.get("information") or {}).get("issued_at"),
            "sent_to": {"service": recipient.get("service"), "organisation": names.get(agency, agency),
                        "professional": recipient.get("professional_id")},
            "status": "received" if r.state in RECEIVED else "being sent",
            "when": _when(r.delivered_at) or _when(r.queued_at),
            "basis": BASIS_WORDS.get(str(decision.get("basis")), "another lawful basis"),
            "read_by": reads.get(r.delivery_id, []),
        })
    decisions = [{
        "what": "A safeguarding lead decided that "
                f"{o.recipient_service or 'services'} at {names.get(o.recipient_agency_id, o.recipient_agency_id)} "
                "may see your child's information without your consent, to keep your child safe.",
        "from": _when(o.starts_at), "until": _when(o.ends_at), "decided_by": o.made_by} for o in told]
    viewed = [{"who": r.actor, "what": "viewed", "when": r.recorded_at.isoformat(), "where": _where(r.data_ref)}
              for r in AuditLog(store).records(household=household_id, actions=["read_timeline"])]
    return {"shared": shared, "safeguarding_decisions": decisions, "viewed": viewed}
