"""Enrolment: a coordinator creates a household, adds its children and adults, and links each
person's agency identifiers to them.

Households, members and caseloads are rows in the database (the coordinator's working record).
Identifier links are *events*: each link or unlink goes through the ingest service as an
``IdentityLinked`` record, so it is durable, on the identity topic, replayed with everything else,
and projected by the workers; an unlink removes the events it brought from the family's timeline.
The identifier's value never leaves this module except as a pseudonym.

Each link and unlink writes its ``identity_link`` / ``identity_unlink`` audit record in the
transaction that accepts the event, so there is no link without its record. The reason the
coordinator gave is kept in the record sealed under the identifier's data key
(:mod:`hub.governance.audit_seal`): IG reads it through ``GET /v1/audit/records``, and erasing the
person makes it unreadable.

An identifier already linked to a child in another household is not quietly moved: the link is
refused (:class:`~hub.core.errors.ConflictError`, naming the rule and never the identifier) unless
the caller coordinates both households or is an IG officer or admin. Then it is a *move*: an
``identity_move`` audit record (hub ids only) in the same transaction, and ``on_move`` — the API
raises an alert to each household's coordinators there — so the family who lost the link hears of it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import sqlalchemy as sa

from hub.core.errors import ConflictError, ForbiddenError, NotFoundError, Problem, ValidationError
from hub.core.events import ENROLMENT_SOURCE, InboundEvent, SubjectRef
from hub.db.schema import caseloads, household_members, households, identity_links, ingest_log
from hub.db.sealed import member_key, sealer
from hub.db.store import Store, utcnow
from hub.governance.audit import AuditEntry, AuditLog
from hub.governance.audit_seal import seal_text
from hub.ingest.service import Acceptance, IngestService, event_id_for
from hub.wire.sealing import KeyVault

LINKABLE = ("nhs-number", "upn", "la-person-id", "hub-child-id", "other")
#: roles that may move an identifier between households without coordinating both, and create households anywhere
UNBOUND_ROLES = ("ig_officer", "admin")
MOVE_RULE = ("this identifier is linked to a child in another household; only a coordinator of both households, "
             "or an IG officer or admin, may move it")


#: a run of this many digits reads as an NHS number to the privacy scrubber: hub ids never hold one
_DIGIT_RUN = re.compile(r"\d{8}")


def new_id(prefix: str) -> str:
    """A new hub id, ``<prefix>-`` and 16 hex digits, never with eight digits in a row (so no hub id can be
    taken for an NHS number by a scrubber, a log scan or an auditor)."""
    while True:
        candidate = uuid.uuid4().hex[:16]
        if not _DIGIT_RUN.search(candidate):
            return f"{prefix}-{candidate}"


@dataclass(frozen=True)
class Move:
    """A link that takes an identifier from one child to another (hub ids only)."""

    from_household: str
    from_child: str
    to_household: str
    to_child: str
    by: str


@dataclass(frozen=True)
class Member:
    member_id: str
    household_id: str
    kind: Literal["child", "adult"]
    relationship: str
    parental_responsibility: bool
    date_of_birth: date | None
    competent_from: date | None = None


class Enrolment:
    def __init__(self, store: Store, ingest: IngestService, vault: KeyVault | None = None) -> None:
        self.store = store
        self.ingest = ingest
        self.vault = vault if vault is not None else getattr(getattr(ingest, "serde", None), "vault", None)

    def create_household(self, coordinator_id: str, *, by: str | None = None, role: str = "coordinator") -> str:
        """A new household on ``coordinator_id``'s caseload: a coordinator's own only (admin or IG: anyone's)."""
        if role not in UNBOUND_ROLES and by is not None and by != coordinator_id:
            raise ForbiddenError("a coordinator may create households only on their own caseload")
        household_id = new_id("hh")
        now = utcnow()
        with self.store.engine.begin() as conn:
            conn.execute(households.insert().values(household_id=household_id, created_at=now,
                                                    created_by=coordinator_id))
            conn.execute(caseloads.insert().values(coordinator_id=coordinator_id, household_id=household_id,
                                                   since=now))
        return household_id

    def assign(self, coordinator_id: str, household_id: str, *, by: str) -> None:
        """Put a household on a coordinator's caseload (creating its record if links made it first)."""
        with self.store.engine.begin() as conn:
            known = conn.execute(sa.select(households.c.household_id).where(
                households.c.household_id == household_id)).first()
            if not known:
                conn.execute(households.insert().values(household_id=household_id, created_at=utcnow(),
                                                        created_by=by))
            exists = conn.execute(sa.select(caseloads.c.since).where(
                caseloads.c.coordinator_id == coordinator_id, caseloads.c.household_id == household_id)).first()
            if not exists:
                conn.execute(caseloads.insert().values(coordinator_id=coordinator_id, household_id=household_id,
                                                       since=utcnow()))

    def household(self, household_id: str) -> list[Member]:
        with self.store.engine.connect() as conn:
            found = conn.execute(sa.select(households.c.household_id).where(
                households.c.household_id == household_id)).first()
            if not found:
                raise NotFoundError("no such household")
            rows = conn.execute(sa.select(household_members).where(
                household_members.c.household_id == household_id).order_by(household_members.c.created_at)).all()
        seal = sealer(self.store)
        return [Member(r.member_id, r.household_id, r.kind, r.relationship, r.parental_responsibility,
                       seal.date(household_members.c.date_of_birth, r.member_id, r.date_of_birth), r.competent_from)
                for r in rows]

    def add_member(self, household_id: str, kind: Literal["child", "adult"], relationship: str,
                   parental_responsibility: bool = False, date_of_birth: date | None = None,
                   competent_from: date | None = None) -> Member:
        self.household(household_id)
        if kind == "child" and parental_responsibility:
            raise ValidationError("a child member cannot hold parental responsibility")
        if date_of_birth and date_of_birth > datetime.now(UTC).date():
            raise ValidationError("date_of_birth is in the future")
        if competent_from is not None and kind != "child":
            raise ValidationError("competent_from is recorded for a child member only")
        member = Member(new_id("c" if kind == "child" else "a"), household_id, kind,
                        relationship, parental_responsibility, date_of_birth, competent_from)
        # sealed under the member's own data key, before the transaction that may create it
        born = sealer(self.store).seal_date(household_members.c.date_of_birth, member.member_id,
                                            member_key(member.member_id), date_of_birth)
        with self.store.engine.begin() as conn:
            conn.execute(household_members.insert().values(
                member_id=member.member_id, household_id=household_id, kind=kind, relationship=relationship,
                parental_responsibility=parental_responsibility, date_of_birth=born,
                competent_from=competent_from, created_at=utcnow()))
        return member

    def set_corporate_parent(self, household_id: str, member_id: str, agency_id: str | None, *, by: str,
                             role: str, source: str | None = None) -> dict[str, str | None]:
        """Record (or, with None, clear) the local authority that is a looked-after child's corporate parent: a
        consent actor like a parent. Audited (``corporate_parent``) in the same transaction as the change."""
        member = self._member(household_id, member_id)
        if member.kind != "child":
            raise ValidationError(Problem("/member_id", "only a child member can have a corporate parent"),
                                  title="Not a child")
        M = household_members.c
        with self.store.engine.begin() as conn:
            before = conn.execute(sa.select(M.corporate_parent).where(M.member_id == member_id)).scalar()
            if before == agency_id:
                return {"member_id": member_id, "corporate_parent": agency_id, "status": "unchanged"}
            conn.execute(household_members.update().where(M.member_id == member_id).values(
                corporate_parent=agency_id))
            AuditLog(self.store).record_in(conn, AuditEntry(
                action="corporate_parent", actor=by, actor_role=role, subject_household=household_id,
                subject_child=member_id, data_ref=f"member:{member_id}", purpose="enrolment",
                detail={"agency": agency_id or "", "before": before or ""}, source=source))
        return {"member_id": member_id, "corporate_parent": agency_id, "status": "recorded" if agency_id else "cleared"}

    def _member(self, household_id: str, member_id: str) -> Member:
        for m in self.household(household_id):
            if m.member_id == member_id:
                return m
        raise NotFoundError("no such member in this household")

    def _next_version(self, source_id: str) -> int:
        c = ingest_log.c
        with self.store.engine.connect() as conn:
            current = conn.execute(sa.select(sa.func.max(c.source_version)).where(
                c.source_system == ENROLMENT_SOURCE, c.source_id == source_id)).scalar()
        return int(current or 0) + 1

    def linked_to(self, subject: str) -> tuple[str, str] | None:
        """(household, child) the subject is actively linked to now, if any."""
        L = identity_links.c
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(L.household_id, L.child_id).where(
                L.subject == subject, L.active.is_(True))).first()
        return (row.household_id, row.child_id) if row else None

    def _move(self, subject: str, household_id: str, child_id: str, by: str, role: str) -> Move | None:
        """The move a link makes, if the identifier is linked to another child now; refused if not the caller's."""
        now = self.linked_to(subject)
        if now is None or now == (household_id, child_id):
            return None
        if now[0] != household_id and role not in UNBOUND_ROLES and now[0] not in self.caseload(by):
            raise ConflictError(Problem("/value", MOVE_RULE, status=409), title="Identifier linked elsewhere")
        return Move(now[0], now[1], household_id, child_id, by)

    async def link(self, household_id: str, member_id: str, system: str, value: str, *, by: str,
                   action: Literal["link", "unlink"] = "link", reason: str | None = None, role: str = "coordinator",
                   on_move: Callable[[sa.Connection, Move], object] | None = None) -> Acceptance:
        """Link (or undo a link of) an agency identifier to a member, as an IdentityLinked event."""
        member = self._member(household_id, member_id)
        if system not in LINKABLE:
            raise ValidationError(f"identifier system must be one of {', '.join(LINKABLE)}")
        ref = SubjectRef(system, value)
        self._validate(ref)
        subject = self.ingest.pseudonymise(system, value)
        move = await asyncio.to_thread(self._move, subject, household_id, member.member_id, by, role) \
            if action == "link" else None
        source_id = f"{member.member_id}:{subject}"
        event = InboundEvent(
            record_type="IdentityLinked", sector="hub", source_system=ENROLMENT_SOURCE, source_id=source_id,
            source_version=self._next_version(source_id), occurred_at=datetime.now(UTC), subject=ref,
            body={"action": action, "child_id": member.member_id, "household_id": household_id,
                  "identifier_system": system, "reason": reason or f"{action} by {by}"})
        detail: dict[str, object] = {"identifier_system": system, "version": event.source_version}
        if reason and self.vault is not None:
            detail["reason"] = await asyncio.to_thread(seal_text, self.vault, subject, reason)
        data_ref = event_id_for(ENROLMENT_SOURCE, source_id)
        entries = [AuditEntry(
            action="identity_link" if action == "link" else "identity_unlink", actor=by, actor_role=role,
            subject_household=household_id, subject_child=member.member_id, data_ref=data_ref, purpose="enrolment",
            detail=detail)]
        if move is not None:
            entries.append(AuditEntry(
                action="identity_move", actor=by, actor_role=role, subject_household=household_id,
                subject_child=member.member_id, data_ref=data_ref, purpose="enrolment",
                detail={"identifier_system": system, "from_household": move.from_household,
                        "from_child": move.from_child, "to_household": household_id, "to_child": member.member_id}))
        audit = AuditLog(self.store)

        def then(conn: sa.Connection) -> None:
            for entry in entries:
                audit.record_in(conn, entry)
            if move is not None and on_move is not None:
                on_move(conn, move)

        [acceptance] = await self.ingest.accept([event], then=then)
        return acceptance

    @staticmethod
    def _validate(ref: SubjectRef) -> None:
        from connectors.identifiers import IdentifierError, subject_ref

        if ref.system in ("nhs-number", "upn", "la-person-id"):
            try:
                subject_ref(ref.system, ref.value)
            except IdentifierError as exc:
                raise ValidationError(str(exc), title="Invalid identifier") from exc

    def caseload(self, coordinator_id: str) -> list[str]:
        with self.store.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(caseloads.c.household_id).where(
                caseloads.c.coordinator_id == coordinator_id).order_by(caseloads.c.since))]
