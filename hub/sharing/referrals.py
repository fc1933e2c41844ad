"""One referral, every service (a single point of access): a multi-agency referral and each service's answer.

A multi-agency referral names several services. It is one ``ReferralMade`` per service sharing one
``requisition`` (the FHIR ServiceRequest.requisition of a Bundle a referring professional sends, or
the id this module gives one a coordinator makes through the API). Each part is routed to its
service's webhook or inbox by the sharing step under the same consent rules as reports (the schema's
``hub.addressed``: from the referring service to the one service named, nobody else). Each service's
answer is read from the records its own system sends, or its inbox acknowledgement: accepted, declined
with a reason, a waiting list with its estimate, a first appointment booked; until then "no answer"
(and, after the rule's weeks, a ``referral_unanswered`` alert).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.core.errors import NotFoundError, ValidationError
from hub.core.events import InboundEvent
from hub.db.schema import ingest_log
from hub.db.store import Store, utcnow
from hub.ingest.service import Acceptance, IngestService
from hub.sharing.alerts import list_alerts
from hub.sharing.consents import child_subject, link_event, linked_in
from hub.sharing.coordination import untold_categories
from hub.stream import readmodel

SOURCE = "hub-referrals"
#: the namespace of requisitions derived from an Idempotency-Key
_KEYS = uuid.UUID("5b0f7a52-3a64-4c1e-9d0e-7f1b2c3d4e5f")
PATHWAY = "single point of access"
SECTORS = ("health", "social_care", "education")


def _service(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw.get("agency_id") or not raw.get("service_name") \
            or raw.get("sector") not in SECTORS:
        raise ValidationError(f"{what} needs agency_id, service_name and a sector ({', '.join(SECTORS)})")
    return {"agency_id": str(raw["agency_id"]), "agency_name": raw.get("agency_name"), "sector": raw["sector"],
            "service_code": raw.get("service_code"), "service_name": str(raw["service_name"])}


async def create(store: Store, ingest: IngestService, household_id: str, child_id: str, *,
                 referrer_service: Any, services: Any, reason: str | None = None, priority: str | None = None,
                 now: datetime | None = None, idempotency_key: str | None = None) -> tuple[str, list[Acceptance]]:
    """Make the referral: one ``ReferralMade`` per named service, one requisition. Refused (422, nothing
    recorded) without a referring service or with no service, a service named twice, or one malformed.

    With an ``idempotency_key`` the requisition is derived from it (and the household and child), so a
    request sent again with the same key is answered with the referral the first one made, as duplicates,
    and nothing is recorded twice."""
    now = now or utcnow()
    in_household, linked = linked_in(store, household_id, child_id)
    if not in_household:
        raise NotFoundError("no such child in this household")
    referrer = _service(referrer_service, "referrer_service")
    if not isinstance(services, list) or not services:
        raise ValidationError("services must name at least one service")
    named = [_service(s, f"services[{i}]") for i, s in enumerate(services)]
    keys = [(s["agency_id"], s["service_name"]) for s in named]
    if len(set(keys)) != len(keys):
        raise ValidationError("a service is named twice")
    keyed = None if idempotency_key is None else uuid.uuid5(_KEYS, "\x1f".join((household_id, child_id,
                                                                                  idempotency_key)))
    requisition = f"referral-{keyed or uuid.uuid4()}"
    made = _made(store, requisition, len(named)) if idempotency_key is not None else []
    if made:
        return requisition, made
    events = [] if linked else [link_event(store, household_id, child_id, now)]
    events += [InboundEvent(
        record_type="ReferralMade", sector=referrer["sector"], source_system=SOURCE, source_id=f"{requisition}/{n}",
        occurred_at=now, subject=child_subject(child_id), category="general",
        body={"service": s, "referrer_service": referrer, "reason": reason, "priority": priority, "pathway": PATHWAY,
              "requisition": requisition}) for n, s in enumerate(named)]
    accepted = await ingest.accept(events)
    return requisition, accepted[len(accepted) - len(named):]  # the parts, not the hub's own link before them


def _made(store: Store, requisition: str, parts: int) -> list[Acceptance]:
    """The parts of ``requisition`` already in the ingest log, as duplicates (none: not made yet)."""
    ids = [f"{requisition}/{n}" for n in range(parts)]
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ingest_log.c.event_id, ingest_log.c.source_version, ingest_log.c.topic)
                            .where(ingest_log.c.source_system == SOURCE, ingest_log.c.source_id.in_(ids))).all()
    return [Acceptance(r.event_id, int(r.source_version), "duplicate", r.topic) for r in rows]


def _answer(part: dict[str, Any], later: list[dict[str, Any]]) -> dict[str, Any]:
    """The service's answer to one part of the referral, from its records after the referral: the service's own,
    and an outcome naming the part from the agency it was sent to (never another agency's)."""
    source_id = part["record"]["meta"].get("source_id")
    mine = [e for e in later if (e["agency_id"], e["service_name"]) == (part["agency_id"], part["service_name"])
            or (e["record_type"] == "ReferralOutcome" and e["record"].get("referral_id") == source_id
                and e["agency_id"] == part["agency_id"])]
    answer: dict[str, Any] = {"answer": "no_answer"}
    for e in mine:  # in event-time order: the latest step the service has reached
        r, t = e["record"], e["record_type"]
        at = {"answered_at": e["occurred_at"].isoformat()}
        if t == "ReferralOutcome" and r.get("outcome") == "declined":
            answer = {"answer": "declined", "reason": r.get("reason"), **at}
        elif t == "ReferralOutcome" and answer["answer"] == "no_answer":
            answer = {"answer": str(r.get("outcome")), **at}
        elif t in ("WaitingListEntered", "WaitEstimateUpdated") and answer["answer"] != "appointment_booked":
            answer = {"answer": "waiting_list", "estimated_wait_days": r.get("estimated_wait_days"), **at}
        elif t == "AppointmentBooked" and answer["answer"] != "appointment_booked":
            start = r.get("start")
            answer = {"answer": "appointment_booked", "first_appointment": start.isoformat()
                      if isinstance(start, datetime) else start, **at}
    return answer


def referral(store: Store, household_id: str, referral_id: str) -> dict[str, Any]:
    """One referral with one row per service: the service, when it was referred and its answer."""
    untold = untold_categories()
    for child in readmodel.children(store, household_id):
        entries = [e for e in readmodel.child_records(store, household_id, child)  # as a coordinator may see
                   if not e["held"] and e["category"] not in untold]
        parts = [e for e in entries if e["record_type"] == "ReferralMade"
                 and e["record"].get("requisition") == referral_id]
        if not parts:
            continue
        parts.sort(key=lambda e: (e["occurred_at"], str(e["record"]["meta"].get("source_id"))))  # as referred
        alerts = {a["details"].get("event_id"): a for a in list_alerts(store, household_id=household_id,
                                                                       kind="referral_unanswered")}
        rows = []
        for p in parts:
            later = [e for e in entries if e["occurred_at"] > p["occurred_at"]]
            alert = alerts.get(p["event_id"])
            rows.append({"service": p["record"]["service"], "referred_at": p["occurred_at"].isoformat(),
                         "event_id": p["event_id"], **_answer(p, later),
                         "alert": {"alert_id": alert["alert_id"], "message": alert["message"]} if alert else None})
        first = parts[0]["record"]
        return {"referral_id": referral_id, "child_id": child, "referrer_service": first.get("referrer_service"),
                "reason": first.get("reason"), "pathway": first.get("pathway"), "services": rows}
    raise NotFoundError("no such referral for this household")


def referrals(store: Store, household_id: str) -> list[dict[str, Any]]:
    """Every multi-agency referral of the household, each with one row per service."""
    ids: list[str] = []
    for child in readmodel.children(store, household_id):
        for e in readmodel.child_records(store, household_id, child):
            req = e["record"].get("requisition") if e["record_type"] == "ReferralMade" else None
            if req and req not in ids:
                ids.append(req)
    return [referral(store, household_id, r) for r in ids]
