"""Immutable model of the consent library: information, recipients, overrides, decisions.

The directives a family makes are in :mod:`consent.directives`.

All datetimes must be timezone-aware. Every person is referred to by a pseudonymous id; a date of
birth is only ever held by :class:`Child` (excluded from its ``repr``) and never copied into a
decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from consent.errors import InvalidOverrideError, InvalidRequestError

YOUNG_PERSON_AGE = 16
MIN_JUSTIFICATION_CHARS = 20


class Outcome(StrEnum):
    PERMIT = "permit"
    DENY = "deny"
    HOLD = "hold"


#: Strictness order used by ``decide_strictest``: DENY > HOLD > PERMIT.
STRICTNESS = {Outcome.PERMIT: 0, Outcome.HOLD: 1, Outcome.DENY: 2}


class Basis(StrEnum):
    CONSENT = "consent"
    STATUTORY_DUTY = "statutory_duty"
    SAFEGUARDING = "safeguarding"
    RIGHT_OF_ACCESS = "right_of_access"
    DIRECT_CARE = "direct_care"  # implied consent for direct care inside the producing organisation
    NONE = "none"


class Category(StrEnum):
    GENERAL = "general"
    CLINICAL = "clinical"
    SOCIAL_CARE = "social_care"
    EDUCATION = "education"
    MENTAL_HEALTH = "mental_health"
    CHILD_PROTECTION = "child_protection"
    SEXUAL_HEALTH = "sexual_health"
    DOMESTIC_ABUSE = "domestic_abuse"


RESTRICTED_CATEGORIES: frozenset[Category] = frozenset(
    {Category.MENTAL_HEALTH, Category.CHILD_PROTECTION, Category.SEXUAL_HEALTH, Category.DOMESTIC_ABUSE}
)


class Sector(StrEnum):
    HEALTH = "health"
    SOCIAL_CARE = "social_care"
    EDUCATION = "education"
    FAMILY = "family"


class RecipientKind(StrEnum):
    AGENCY_PROFESSIONAL = "agency_professional"
    FAMILY = "family"  # parent / carer; right of access needs parental responsibility
    YOUNG_PERSON = "young_person"  # the child themself
    COORDINATOR = "coordinator"  # care coordinator; treated as an agency professional of its agency


class Purpose(StrEnum):
    DIRECT_CARE = "direct_care"
    CARE_COORDINATION = "care_coordination"
    EHC_NEEDS_ASSESSMENT = "ehc_needs_assessment"  # statutory (SEND Regs 2014 reg 6/8)
    SAFEGUARDING = "safeguarding"
    FAMILY_COPY = "family_copy"


class DirectiveDecision(StrEnum):
    PERMIT = "permit"
    DENY = "deny"

    def opposite(self) -> DirectiveDecision:
        return DirectiveDecision.DENY if self is DirectiveDecision.PERMIT else DirectiveDecision.PERMIT


class Grantor(StrEnum):
    PARENT = "parent"  # parent / carer with parental responsibility
    YOUNG_PERSON = "young_person"  # the child, 16+ or recorded as competent (Gillick)
    CORPORATE_PARENT = "corporate_parent"  # the local authority of a looked-after child (its agency id)


def require_aware(value: datetime | None, what: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``what`` if ``value`` is a naive datetime (``None`` passes)."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise error(f"{what} must be a timezone-aware datetime (got a naive datetime)")


def sixteenth_birthday(birth_date: date) -> date:
    """The date a child born on ``birth_date`` turns 16 (29 February birthdays count on 1 March)."""
    try:
        return birth_date.replace(year=birth_date.year + YOUNG_PERSON_AGE)
    except ValueError:
        return date(birth_date.year + YOUNG_PERSON_AGE, 3, 1)


@dataclass(frozen=True, slots=True)
class Child:
    """The child whose record is being shared. ``birth_date`` is an input only: never logged or repr'd."""

    id: str
    birth_date: date = field(repr=False)
    competent_from: date | None = None  # recorded Gillick competence (before 16)

    def young_person_controls(self, at: datetime) -> bool:
        """True when the young person (16+ or recorded competent) controls their own record at ``at``."""
        day = at.date()
        if day >= sixteenth_birthday(self.birth_date):
            return True
        return self.competent_from is not None and day >= self.competent_from


@dataclass(frozen=True, slots=True)
class Information:
    """A piece of information carried in a child's record."""

    id: str
    kind: str  # report, assessment, plan, referral_outcome, diagnosis, result, social_care_outcome, ...
    category: Category
    agency_id: str  # producing agency
    sector: Sector  # producing sector
    about: str  # pseudonymous id of the person the information is about
    in_record_of: str  # pseudonymous id of the child whose record carries it
    issued_at: datetime
    disclosure_hold: bool = False  # clinician must tell the family in person first
    released: bool = False  # hold lifted by the producing clinician

    def __post_init__(self) -> None:
        require_aware(self.issued_at, "information issued_at", InvalidRequestError)
        for name in ("id", "kind", "agency_id", "about", "in_record_of"):
            if not getattr(self, name):
                raise InvalidRequestError(f"information {name} must not be empty")

    @property
    def held(self) -> bool:
        return self.disclosure_hold and not self.released


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who would receive the information."""

    kind: RecipientKind
    agency_id: str | None = None
    sector: Sector | None = None
    service: str | None = None
    role: str | None = None
    professional_id: str | None = None  # pseudonymous professional id
    person_id: str | None = None  # pseudonymous id of a family member / the young person
    has_parental_responsibility: bool = True  # only meaningful for kind=family
    # derived once in __post_init__ (kept out of eq / hash / repr):
    is_family_side: bool = field(init=False, repr=False, compare=False)
    effective_sector: Sector | None = field(init=False, repr=False, compare=False)  # family side: FAMILY
    identity: str | None = field(init=False, repr=False, compare=False)  # matched by professional_ids

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RecipientKind(self.kind))
        if self.kind in (RecipientKind.AGENCY_PROFESSIONAL, RecipientKind.COORDINATOR) and (
            not self.agency_id or self.sector is None
        ):
            raise InvalidRequestError(f"a {self.kind.value} recipient needs an agency id and a sector")
        family_side = self.kind in (RecipientKind.FAMILY, RecipientKind.YOUNG_PERSON)
        object.__setattr__(self, "is_family_side", family_side)
        object.__setattr__(self, "effective_sector", Sector.FAMILY if family_side else self.sector)
        object.__setattr__(self, "identity", self.professional_id or self.person_id)


@dataclass(frozen=True, slots=True)
class OverrideScope:
    recipient_agency_ids: frozenset[str]
    categories: frozenset[Category] | None = None  # None = every category
    recipient_services: frozenset[str] | None = None  # None = every service of those agencies (case-insensitive)
    information_ids: frozenset[str] | None = None  # None = every record in scope

    def __post_init__(self) -> None:
        agencies = frozenset(self.recipient_agency_ids)
        if not agencies:
            raise InvalidOverrideError("a safeguarding override must name at least one recipient agency")
        object.__setattr__(self, "recipient_agency_ids", agencies)
        for name in ("recipient_services", "information_ids"):
            value = getattr(self, name)
            if value is None:
                continue
            items = frozenset(v.lower() if name == "recipient_services" else v for v in value)
            if not items:
                raise InvalidOverrideError(f"override {name.replace('_', ' ')} must be omitted (None) or non-empty")
            object.__setattr__(self, name, items)
        if self.categories is not None:
            cats = frozenset(Category(c) for c in self.categories)
            if not cats:
                raise InvalidOverrideError("override categories must be omitted (None) or non-empty")
            object.__setattr__(self, "categories", cats)


@dataclass(frozen=True, slots=True)
class Override:
    """A time-limited safeguarding override (DPA 2018 Sch 1 para 18), flagged for IG review."""

    id: str
    child_id: str
    named_person: str  # pseudonymous id of the accountable professional
    justification: str
    start: datetime
    end: datetime
    scope: OverrideScope

    def __post_init__(self) -> None:
        if not self.id or not self.child_id:
            raise InvalidOverrideError("a safeguarding override needs an id and a child id")
        if not self.named_person or not self.named_person.strip():
            raise InvalidOverrideError(f"override {self.id}: a named accountable person is required")
        if len((self.justification or "").strip()) < MIN_JUSTIFICATION_CHARS:
            raise InvalidOverrideError(
                f"override {self.id}: a written justification of at least {MIN_JUSTIFICATION_CHARS} "
                "characters is required"
            )
        require_aware(self.start, f"override {self.id} start", InvalidOverrideError)
        require_aware(self.end, f"override {self.id} end", InvalidOverrideError)
        if self.start >= self.end:
            raise InvalidOverrideError(f"override {self.id}: start must be before end (time-limited)")

    def applies(self, info: Information, recipient: Recipient, purpose: Purpose, at: datetime) -> bool:
        return (
            purpose is Purpose.SAFEGUARDING
            and self.start <= at < self.end
            and info.in_record_of == self.child_id
            and not recipient.is_family_side
            and recipient.agency_id in self.scope.recipient_agency_ids
            and (self.scope.categories is None or info.category in self.scope.categories)
            and (self.scope.recipient_services is None
                 or (recipient.service or "").lower() in self.scope.recipient_services)
            and (self.scope.information_ids is None or info.id in self.scope.information_ids)
        )


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    basis: Basis
    rule_id: str
    ruleset_version: str
    reasons: tuple[str, ...]
    directive_ids: tuple[str, ...] = ()
    notify_family: bool = False
    requires_ig_review: bool = False
    override_id: str | None = None

    @property
    def permitted(self) -> bool:
        return self.outcome is Outcome.PERMIT
