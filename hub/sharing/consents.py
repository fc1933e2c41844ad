"""Consent management through the hub's acceptance path (durable, replayable, in order).

A family's or coordinator's directive becomes a ConsentGranted event (its ``fhir_consent`` the FHIR
R4 Consent JSON) and a withdrawal a ConsentWithdrawn event; both go through
``IngestService.accept`` like any agency event, so the ingest log holds them and the stream worker
applies them (:mod:`hub.sharing.processor`).

The subject of these events is the identifier ``hub-child-id`` = the hub's child id: a pseudonym
cannot be reversed to an agency identifier, so the hub uses its own. Enrolment must therefore link
``hub-child-id`` too; when the child has no such link yet, :func:`grant` sends an IdentityLinked
event for it first (same subject, so the same partition and order).

A directive an agency recorded and that waits as ``pending_confirmation``
(:mod:`hub.sharing.recorded_consent`) is confirmed by :func:`confirm`: the same Consent, given again
through the hub's own consent source, so it comes into force.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consent import ConsentError, Directive, Grantor, directives_needing_confirmation
from consent.fhir import directive_to_fhir_dict, from_fhir
from hub.core.errors import NotFoundError, Problem, ValidationError
from hub.core.events import InboundEvent, SubjectRef
from hub.core.privacy import scrub_text
from hub.db.schema import consent_directives, household_members, identity_links
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc, utcnow
from hub.governance.audit import AuditEntry, AuditLog
from hub.ingest.service import Acceptance, IngestService

SOURCE = "hub-consent"
SYSTEM = "hub-child-id"
CD = consent_directives.c
L = identity_links.c


def child_subject(child_id: str) -> SubjectRef:
    return SubjectRef(SYSTEM, child_id)


def linked_in(store: Store, household_id: str, child_id: str) -> tuple[bool, bool]:
    """(the child is in the household, the child has an active hub-child-id link)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(L.identifier_system).where(
            L.household_id == household_id, L.child_id == child_id, L.active.is_(True))).all()
    return bool(rows), any(r[0] == SYSTEM for r in rows)


def parse(resource: dict[str, Any], child_id: str) -> Directive:
    """Validate a FHIR R4 Consent for this child (422 with the reason when it does not map)."""
    try:
        d = from_fhir(resource)
    except (ConsentError, ValueError) as exc:
        raise ValidationError([Problem("/", str(exc))], title="Not a usable FHIR Consent") from None
    if scrub_text(d.id) != d.id:  # the id is kept in the audit trail, which holds no personal identifiers
        raise ValidationError([Problem("/id", "a Consent's id must not look like an NHS number, UPN or date of "
                                              "birth")], title="Not a usable FHIR Consent")
    if d.child_id != child_id:
        raise ValidationError([Problem("/patient", f"the consent must be about Patient/{child_id}")],
                              title="Consent for another child")
    return d


def _check_young_person(store: Store, directive: Directive) -> None:
    """A young person's own directive counts from 16, or from recorded competence (422 before that)."""
    if directive.made_by_role is not Grantor.YOUNG_PERSON:
        return
    from hub.sharing.child_state import load_child

    with store.engine.connect() as conn:
        child = load_child(conn, directive.child_id)
    if not child.young_person_controls(directive.made_at):
        raise ValidationError([Problem("/performer", "a young person makes their own consent decisions from 16, "
                                                     "or earlier once recorded as competent; neither is on record "
                                                     "for this child at the consent's date")],
                              title="Young-person directive not in force")


@dataclass(frozen=True)
class Actor:
    """Who changes a consent (the authenticated caller), for the audit record written with the change."""

    subject: str
    role: str


HUB_ACTOR = Actor("hub", "system")  # a change the hub makes itself (tests, demo)


def _audited(store: Store, actor: Actor, change: str, home: tuple[str, str], directive_id: str,
             **detail: Any) -> Callable[[Connection], object]:
    """The audit record of a consent change, written in the transaction that logs the change's event:
    if the record cannot be written, the change is not accepted."""
    entry = AuditEntry("consent_change", actor=actor.subject, actor_role=actor.role, subject_household=home[0],
                       subject_child=home[1], data_ref=f"consent:{directive_id}", purpose="consent",
                       detail={"directive_id": directive_id, "change": change, **detail})
    audit = AuditLog(store)
    return lambda conn: audit.record_in(conn, entry)


async def grant(store: Store, ingest: IngestService, household_id: str, child_id: str,
                resource: dict[str, Any], now: datetime | None = None,
                actor: Actor = HUB_ACTOR) -> tuple[Directive, list[Acceptance]]:
    now = now or utcnow()
    directive = parse(resource, child_id)
    in_household, linked = linked_in(store, household_id, child_id)
    if not in_household:
        raise NotFoundError("no such child in this household")
    _check_young_person(store, directive)
    events = [] if linked else [link_event(store, household_id, child_id, now)]
    fhir = json.dumps(directive_to_fhir_dict(directive), separators=(",", ":"))
    events.append(InboundEvent(
        record_type="ConsentGranted", sector="family", source_system=SOURCE, source_id=directive.id,
        source_version=int(now.timestamp() * 1000), occurred_at=directive.made_at, subject=child_subject(child_id),
        body={"directive_id": directive.id, "granted_by": "family", "fhir_consent": fhir}))
    then = _audited(store, actor, "granted", (household_id, child_id), directive.id,
                    made_by_role=directive.made_by_role.value)
    return directive, await ingest.accept(events, then=then)


def link_event(store: Store, household_id: str, child_id: str, now: datetime) -> InboundEvent:
    """The child's ``hub-child-id`` link, dated when the child was enrolled (``now`` where no enrolment is
    recorded), so that a retried request, or a second one sent before the first link is projected, sends
    the same link again (a duplicate) rather than other content under the same version (a conflict)."""
    with store.engine.connect() as conn:
        enrolled = conn.execute(sa.select(household_members.c.created_at).where(
            household_members.c.member_id == child_id)).scalar()
    return InboundEvent(
        record_type="IdentityLinked", sector="hub", source_system=SOURCE, source_id=f"link-{child_id}-{SYSTEM}",
        occurred_at=as_utc(enrolled) if enrolled is not None else now, subject=child_subject(child_id),
        body={"action": "link", "child_id": child_id, "household_id": household_id, "identifier_system": SYSTEM,
              "reason": "consent management"})


def pending_directive(store: Store, household_id: str, child_id: str, directive_id: str) -> tuple[Directive, str]:
    """A directive of this child waiting for confirmation (404 if none, 422 if it is not waiting)."""
    from hub.sharing.recorded_consent import PENDING

    with store.engine.connect() as conn:
        row = conn.execute(sa.select(CD.status, CD.fhir_json).where(
            CD.directive_id == directive_id, CD.child_id == child_id, CD.household_id == household_id)).first()
    if row is None:
        raise NotFoundError("no such consent directive for this child")
    if row.status != PENDING or row.fhir_json is None:
        raise ValidationError([Problem("/status", f"only a directive pending confirmation can be confirmed; "
                                                  f"this one is {row.status}")], title="Nothing to confirm")
    fhir = sealer(store).text(CD.fhir_json, directive_id, row.fhir_json)
    return from_fhir(json.loads(fhir)), fhir


async def confirm(store: Store, ingest: IngestService, household_id: str, child_id: str, directive_id: str,
                  now: datetime | None = None, actor: Actor = HUB_ACTOR) -> list[Acceptance]:
    """The family (or their coordinator) confirms a directive an agency recorded: it comes into force."""
    now = now or utcnow()
    directive, fhir = pending_directive(store, household_id, child_id, directive_id)
    _, linked = linked_in(store, household_id, child_id)
    events = [] if linked else [link_event(store, household_id, child_id, now)]
    events.append(InboundEvent(
        record_type="ConsentGranted", sector="family", source_system=SOURCE, source_id=directive_id,
        source_version=int(now.timestamp() * 1000), occurred_at=directive.made_at, subject=child_subject(child_id),
        body={"directive_id": directive_id, "granted_by": "family", "fhir_consent": fhir}))
    from hub.sharing.recorded_consent import recorder

    then = _audited(store, actor, "confirmed", (household_id, child_id), directive_id, confirmed=True,
                    recorded_by=recorder(fhir)[0])
    return await ingest.accept(events, then=then)


async def withdraw(store: Store, ingest: IngestService, household_id: str, child_id: str, directive_id: str,
                   reason: str | None = None, now: datetime | None = None,
                   actor: Actor = HUB_ACTOR) -> list[Acceptance]:
    now = now or utcnow()
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(CD.status).where(CD.directive_id == directive_id, CD.child_id == child_id,
                                                      CD.household_id == household_id)).first()
    if row is None:
        raise NotFoundError("no such consent directive for this child")
    return await ingest.accept([InboundEvent(
        record_type="ConsentWithdrawn", sector="family", source_system=SOURCE,
        source_id=f"{directive_id}-withdrawn", occurred_at=now, subject=child_subject(child_id),
        body={"directive_id": directive_id, "withdrawn_by": "family", "reason": reason})],
        # the reason is free text: it travels sealed in the event, the audit record only says one was given
        then=_audited(store, actor, "withdrawn", (household_id, child_id), directive_id,
                      reason_given=bool(reason)))


def list_directives(store: Store, household_id: str, child_id: str, *, today: date | None = None
                    ) -> list[dict[str, Any]]:
    """The child's directives; once the child is 16, parents' directives are flagged for the young
    person to confirm (``needs_young_person_confirmation``)."""
    from hub.sharing.child_state import load_child, parse_directive
    from hub.sharing.model import UNKNOWN_BIRTH_DATE

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(consent_directives).where(
            CD.child_id == child_id, CD.household_id == household_id).order_by(CD.made_at, CD.directive_id)).all()
        child = load_child(conn, child_id)
    seal = sealer(store)
    fhir = {r.directive_id: seal.json(CD.fhir_json, r.directive_id, r.fhir_json) for r in rows if r.fhir_json}
    to_confirm: set[str] = set()
    if child.birth_date != UNKNOWN_BIRTH_DATE:
        active = []
        for r in rows:
            if r.status == "active" and fhir.get(r.directive_id):
                with contextlib.suppress(ConsentError, ValueError):
                    active.append(parse_directive(json.dumps(fhir[r.directive_id]), child_id, None))
        to_confirm = {d.id for d in directives_needing_confirmation(
            active, child.birth_date, today or utcnow().date())}
    out = []
    for r in rows:
        out.append({"directive_id": r.directive_id, "status": r.status,
                    "made_at": as_utc(r.made_at).isoformat() if r.made_at else None,
                    "withdrawn_at": as_utc(r.withdrawn_at).isoformat() if r.withdrawn_at else None,
                    "needs_young_person_confirmation": r.directive_id in to_confirm,
                    "error": r.error, "fhir": fhir.get(r.directive_id)})
    return out


def with_child(directive: Directive, child_id: str) -> Directive:
    return replace(directive, child_id=child_id)
