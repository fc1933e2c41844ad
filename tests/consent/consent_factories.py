"""Builders for the consent tests: a pseudonymous child, agencies and seed-journey directives."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from consent import (
    Category,
    Child,
    Directive,
    DirectiveDecision,
    Grantor,
    Information,
    Recipient,
    RecipientKind,
    Scope,
    Sector,
)

CHILD_ID = "ch-7f3a"
PARENT_ID = "pa-91c2"
SIBLING_ID = "ch-55e0"
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
BIRTH = date(2015, 3, 14)  # ten years old at T0

ABUHB = "abuhb"  # Aneurin Bevan UHB (producer of the SLT report)
CAV = "cav"  # Cardiff and Vale UHB
SCHOOL = "school-ysgol-1"
LA = "la-cardiff"


def child(birth: date = BIRTH, competent_from: date | None = None) -> Child:
    return Child(CHILD_ID, birth, competent_from)


def at(days: float = 0) -> datetime:
    return T0 + timedelta(days=days)


def info(
    category: Category = Category.CLINICAL,
    kind: str = "report",
    agency: str = ABUHB,
    sector: Sector = Sector.HEALTH,
    about: str = CHILD_ID,
    hold: bool = False,
    released: bool = False,
    issued_days: float = 0,
    info_id: str = "ev-slt-001",
) -> Information:
    return Information(
        id=info_id,
        kind=kind,
        category=category,
        agency_id=agency,
        sector=sector,
        about=about,
        in_record_of=CHILD_ID,
        issued_at=at(issued_days),
        disclosure_hold=hold,
        released=released,
    )


def professional(
    agency: str = CAV,
    sector: Sector = Sector.HEALTH,
    service: str | None = "paediatrics",
    role: str | None = "consultant",
    professional_id: str | None = "pr-0042",
) -> Recipient:
    return Recipient(
        RecipientKind.AGENCY_PROFESSIONAL,
        agency_id=agency,
        sector=sector,
        service=service,
        role=role,
        professional_id=professional_id,
    )


def parent(person_id: str = PARENT_ID, pr: bool = True) -> Recipient:
    return Recipient(RecipientKind.FAMILY, person_id=person_id, has_parental_responsibility=pr)


def young_person(person_id: str = CHILD_ID) -> Recipient:
    return Recipient(RecipientKind.YOUNG_PERSON, person_id=person_id)


def directive(
    did: str,
    decision: DirectiveDecision,
    scope: Scope,
    *,
    made_days: float = 1,
    exceptions: tuple = (),
    withdrawn_days: float | None = None,
    by: Grantor = Grantor.PARENT,
) -> Directive:
    return Directive(
        id=did,
        child_id=CHILD_ID,
        made_by=PARENT_ID if by is Grantor.PARENT else CHILD_ID,
        made_by_role=by,
        made_at=at(made_days),
        decision=decision,
        scope=scope,
        exceptions=exceptions,
        withdrawn_at=None if withdrawn_days is None else at(withdrawn_days),
    )
