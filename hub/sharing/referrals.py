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

from hub.core.errors import UNEXPECTED_FIELD, ConflictError, NotFoundError, Problem, ValidationError
from hub.core.events import InboundEvent
from hub.core.limits import unholdable
from hub.core.privacy import pseudonymous
from hub.db.schema import ingest_log
from hub.db.store import Store, as_utc, utcnow
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
#: FHIR ServiceRequest.priority (request-priority)
PRIORITIES = ("routine", "urgent", "asap", "stat")
#: the most services one referral names, and the longest reason
MAX_SERVICES = 20
MAX_REASON = 4000
#: a service's text fields and their longest (the projection's columns hold 120 and 200)
SERVICE_TEXT = {"agency_id": 120, "agency_name": 200, "service_code": 80, "service_name": 200}
#: what the body may hold
BODY_FIELDS = ("referrer_service", "services", "reason", "priority")
KEY_REUSED = ("this Idempotency-Key was used before for another referral (other services, reason or priority); "
              "send a new key for a new referral")


def _text(value: Any, most: int, *, lines: bool = False) -> str | None:
    """What is wrong with a text field (None: nothing), never quoting it: not a string, blank, too long, or
    holding control characters (a reason may have line breaks and tabs) or lone surrogates, which the
    records' encoding and the database refuse later, where nobody can answer the caller."""
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "must not be blank"
    if len(value) > most:
        return f"must be at most {most} characters"
    if unholdable(value, "\n\r\t" if lines else ""):
        return "must not hold control characters or lone surrogates"
    return None


def _service(raw: Any, what: str, where: str) -> tuple[dict[str, Any], list[Problem]]:
    """A service as the records hold it, or the problems with it (each at its field, never quoting it)."""
    if not isinstance(raw, dict) or not raw.get("agency_id") or not raw.get("service_name") \
            or raw.get("sector") not in SECTORS:
        return {}, [Problem(where, f"{what} needs agency_id, service_name and a sector ({', '.join(SECTORS)})")]
    problems = [Problem(where, f"{what}: {UNEXPECTED_FIELD}")] if set(raw) - {"sector", *SERVICE_TEXT} else []
    for name, most in SERVICE_TEXT.items():
        if raw.get(name) is None and name in ("agency_name", "service_code"):
            continue
        wrong = _text(raw.get(name), most) or (None if pseudonymous(raw[name]) else
                                               "must not look like an NHS number, UPN or date of birth")
        if wrong:
            problems.append(Problem(f"{where}/{name}", f"{what}.{name} {wrong}"))
    if problems:  # nothing to compare with the others: a list or dict cannot be a key
        return {}, problems
    return {"agency_id": raw["agency_id"], "agency_name": raw.get("agency_name"), "sector": raw["sector"],
            "service_code": raw.get("service_code"), "service_name": raw["service_name"]}, []


def _checked(referrer_service: Any, services: Any, reason: Any, priority: Any,
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The referring service and the services named, or 422 naming every field that is wrong."""
    referrer, problems = _service(referrer_service, "referrer_service", "/referrer_service")
    named: list[dict[str, Any]] = []
    if not isinstance(services, list) or not services:
        problems.append(Problem("/services", "services must name at least one service"))
    elif len(services) > MAX_SERVICES:
        problems.append(Problem("/services", f"services may name at most {MAX_SERVICES} services"))
    else:
        for i, raw in enumerate(services):
            service, bad = _service(raw, f"services[{i}]", f"/services/{i}")
            named.append(service)
            problems += bad
        keys = [(s["agency_id"], s["service_name"]) for s in named if s]
        if len(set(keys)) != len(keys):
            problems.append(Problem("/services", "a service is named twice"))
    wrong = None if reason is None else _text(reason, MAX_REASON, lines=True)
    if wrong:
        problems.append(Problem("/reason", f"reason {wrong}"))
    if priority is not None and priority not in PRIORITIES:
        problems.append(Problem("/priority", f"priority must be one of {', '.join(PRIORITIES)}"))
    if problems:
        raise ValidationError(problems, title="Not a usable referral")
    return referrer, named


async def create(store: Store, ingest: IngestService, household_id: str, child_id: str, *,
                 referrer_service: Any, services: Any, reason: Any = None, priority: Any = None,
                 now: datetime | None = None, idempotency_key: str | None = None) -> tuple[str, list[Acceptance]]:
    """Make the referral: one ``ReferralMade`` per named service, one requisition. Refused (422, nothing
    recorded, every wrong field named and none quoted) without a referring service or with no service, more
    than :data:`MAX_SERVICES`, a service named twice or malformed, a reason that is not text of at most
    :data:`MAX_REASON` characters, or a priority not in :data:`PRIORITIES`.

    With an ``idempotency_key`` the requisition is derived from it (and the household and child), so a
    request sent again with the same key and body is answered with the referral the first one made, as
    duplicates, and nothing is recorded twice; the same key with another body is refused (409), nothing
    recorded."""
    in_household, linked = linked_in(store, household_id, child_id)
    if not in_household:
        raise NotFoundError("no such child in this household")
    referrer, named = _checked(referrer_service, services, reason, priority)
    keyed = None if idempotency_key is None else uuid.uuid5(_KEYS, "\x1f".join((household_id, child_id,
                                                                                  idempotency_key)))
    requisition = f"referral-{keyed or uuid.uuid4()}"
    first = _made(store, requisition) if idempotency_key is not None else None
    now = first[1] if first else now or utcnow()  # a resend repeats the first request's event time
    events = [] if linked or first else [link_event(store, household_id, child_id, now)]
    events += [InboundEvent(
        record_type="ReferralMade", sector=referrer["sector"], source_system=SOURCE, source_id=f"{requisition}/{n}",
        occurred_at=now, subject=child_subject(child_id), category="general",
        body={"service": s, "referrer_service": referrer, "reason": reason, "priority": priority, "pathway": PATHWAY,
              "requisition": requisition}) for n, s in enumerate(named)]
    if first and first[0] != len(named):
        raise ConflictError(Problem("/", KEY_REUSED), title="Idempotency-Key reused")
    try:
        accepted = await ingest.accept(events)
    except ConflictError:  # a resend whose parts differ from the first request's
        if not first:
            raise
        raise ConflictError(Problem("/", KEY_REUSED), title="Idempotency-Key reused") from None
    return requisition, accepted[len(accepted) - len(named):]  # the parts, not the hub's own link before them


def _made(store: Store, requisition: str) -> tuple[int, datetime] | None:
    """How many parts of ``requisition`` the ingest log holds and their event time (None: not made yet)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ingest_log.c.occurred_at).where(  # by the index, not a LIKE scan
            ingest_log.c.source_system == SOURCE,
            ingest_log.c.source_id.in_([f"{requisition}/{n}" for n in range(MAX_SERVICES)]))).all()
    if not rows:
        return None
    return len(rows), as_utc(rows[0].occurred_at)


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
