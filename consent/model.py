"""Immutable model of the consent library: information, recipients, directives, overrides, decisions.

All datetimes must be timezone-aware. Every person is referred to by a pseudonymous id; a date of
birth is only ever held by :class:`Child` (excluded from its ``repr``) and never copied into a
decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum

from consent.errors import InvalidDirectiveError, InvalidOverrideError, InvalidRequestError

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


def _aware(value: datetime | None, what: str, error: type[Exception]) -> None:
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
class Period:
    """Half-open interval [start, end); ``None`` means unbounded on that side."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        _aware(self.start, "period start", InvalidDirectiveError)
        _aware(self.end, "period end", InvalidDirectiveError)
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise InvalidDirectiveError("a period must start before it ends")

    def contains(self, t: datetime) -> bool:
        return (self.start is None or self.start <= t) and (self.end is None or t < self.end)

    def within(self, other: Period) -> bool:
        """True if this period lies inside ``other``."""
        if other.start is not None and (self.start is None or self.start < other.start):
            return False
        return not (other.end is not None and (self.end is None or self.end > other.end))


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
        _aware(self.issued_at, "information issued_at", InvalidRequestError)
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


def _fs(values: Iterable[str] | None, what: str) -> frozenset[str] | None:
    if values is None:
        return None
    out = frozenset(values)
    if not out:
        raise InvalidDirectiveError(f"scope {what} must be None or non-empty (an empty set matches nothing)")
    return out


_SET_DIMENSIONS = ("agency_ids", "sectors", "services", "roles", "professional_ids", "categories", "purposes")


@dataclass(frozen=True, slots=True)
class Scope:
    """What a provision covers. ``None`` in a dimension means "any"; a set means "one of these".

    All constrained dimensions must match (AND); inside a dimension any value matches (OR).
    """

    agency_ids: frozenset[str] | None = None
    sectors: frozenset[Sector] | None = None
    services: frozenset[str] | None = None
    roles: frozenset[str] | None = None
    professional_ids: frozenset[str] | None = None
    categories: frozenset[Category] | None = None
    purposes: frozenset[Purpose] | None = None
    data_period: Period | None = None  # when the information was issued
    period: Period | None = None  # when the provision is valid
    _specificity: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "agency_ids", _fs(self.agency_ids, "agency_ids"))
        object.__setattr__(self, "services", _fs(self.services, "services"))
        object.__setattr__(self, "roles", _fs(self.roles, "roles"))
        object.__setattr__(self, "professional_ids", _fs(self.professional_ids, "professional_ids"))
        for name, enum in (("sectors", Sector), ("categories", Category), ("purposes", Purpose)):
            raw = getattr(self, name)
            if raw is not None:
                try:
                    conv = frozenset(enum(v) for v in raw)
                except ValueError as exc:
                    raise InvalidDirectiveError(f"scope {name}: {exc}") from None
                if not conv:
                    raise InvalidDirectiveError(f"scope {name} must be omitted (None) or non-empty")
                object.__setattr__(self, name, conv)
        other = (self.categories is not None) + (self.purposes is not None) + (self.data_period is not None)
        object.__setattr__(self, "_specificity", (self.recipient_level(), other))

    # -- specificity -------------------------------------------------------------------------------
    def recipient_level(self) -> int:
        """Named professional (4) > service/role (3) > agency (2) > sector (1) > anyone (0)."""
        if self.professional_ids is not None:
            return 4
        if self.services is not None or self.roles is not None:
            return 3
        if self.agency_ids is not None:
            return 2
        if self.sectors is not None:
            return 1
        return 0

    def specificity(self) -> tuple[int, int]:
        """(recipient level, number of constrained what-dimensions: categories, purposes, data period)."""
        return self._specificity

    def narrower_or_equal(self, other: Scope) -> bool:
        """True if every constraint of ``other`` is also imposed, at least as tightly, by this scope."""
        for name in (
            "agency_ids",
            "sectors",
            "services",
            "roles",
            "professional_ids",
            "categories",
            "purposes",
        ):
            theirs = getattr(other, name)
            if theirs is None:
                continue
            mine = getattr(self, name)
            if mine is None or not mine <= theirs:
                return False
        for name in ("data_period", "period"):
            theirs_p: Period | None = getattr(other, name)
            if theirs_p is None:
                continue
            mine_p: Period | None = getattr(self, name)
            if mine_p is None or not mine_p.within(theirs_p):
                return False
        return True

    def matches(self, info: Information, recipient: Recipient, purpose: Purpose, at: datetime) -> bool:
        if self.agency_ids is not None and recipient.agency_id not in self.agency_ids:
            return False
        if self.sectors is not None and recipient.effective_sector not in self.sectors:
            return False
        if self.services is not None and recipient.service not in self.services:
            return False
        if self.roles is not None and recipient.role not in self.roles:
            return False
        if self.professional_ids is not None and recipient.identity not in self.professional_ids:
            return False
        if self.categories is not None and info.category not in self.categories:
            return False
        if self.purposes is not None and purpose not in self.purposes:
            return False
        if self.data_period is not None and not self.data_period.contains(info.issued_at):
            return False
        return self.period is None or self.period.contains(at)


@dataclass(frozen=True, slots=True)
class Provision:
    """A nested exception: the opposite decision over a narrower scope (recursively)."""

    decision: DirectiveDecision
    scope: Scope
    exceptions: tuple[Provision, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", DirectiveDecision(self.decision))
        object.__setattr__(self, "exceptions", tuple(self.exceptions))
        _check_exceptions(self.decision, self.scope, self.exceptions)


def _check_exceptions(decision: DirectiveDecision, scope: Scope, exceptions: tuple[Provision, ...]) -> None:
    for exc in exceptions:
        if exc.decision == decision:
            raise InvalidDirectiveError(
                f"an exception must have the opposite decision of its parent ({decision.value} parent "
                f"has a {exc.decision.value} exception)"
            )
        if not exc.scope.narrower_or_equal(scope):
            raise InvalidDirectiveError(
                "an exception's scope must be narrower than its parent's: every dimension the parent "
                "constrains must be constrained to a subset (and periods must lie inside)"
            )


@dataclass(frozen=True, slots=True)
class Directive:
    """A consent directive made by a parent (with PR) or the young person, for one child."""

    id: str
    child_id: str
    made_by: str  # pseudonymous id of the parent or young person
    made_by_role: Grantor
    made_at: datetime
    decision: DirectiveDecision
    scope: Scope = field(default_factory=Scope)
    exceptions: tuple[Provision, ...] = ()
    withdrawn_at: datetime | None = None
    confirmed_by_young_person_at: datetime | None = None  # parent directive confirmed after 16

    def __post_init__(self) -> None:
        for name in ("id", "child_id", "made_by"):
            if not getattr(self, name):
                raise InvalidDirectiveError(f"directive {name} must not be empty")
        object.__setattr__(self, "made_by_role", Grantor(self.made_by_role))
        object.__setattr__(self, "decision", DirectiveDecision(self.decision))
        object.__setattr__(self, "exceptions", tuple(self.exceptions))
        _aware(self.made_at, f"directive {self.id} made_at", InvalidDirectiveError)
        _aware(self.withdrawn_at, f"directive {self.id} withdrawn_at", InvalidDirectiveError)
        _aware(self.confirmed_by_young_person_at, f"directive {self.id} confirmation", InvalidDirectiveError)
        if self.withdrawn_at is not None and self.withdrawn_at < self.made_at:
            raise InvalidDirectiveError(f"directive {self.id} cannot be withdrawn before it was made")
        if self.made_by_role is Grantor.YOUNG_PERSON and self.made_by != self.child_id:
            raise InvalidDirectiveError(
                f"directive {self.id}: a young person can only make directives about their own record"
            )
        try:
            _check_exceptions(self.decision, self.scope, self.exceptions)
        except InvalidDirectiveError as exc:
            raise InvalidDirectiveError(f"directive {self.id}: {exc}") from None

    def in_force(self, at: datetime) -> bool:
        """Made by ``at``, not withdrawn by ``at`` (withdrawal applies from ``withdrawn_at``)."""
        return self.made_at <= at and (self.withdrawn_at is None or at < self.withdrawn_at)

    def names_individuals(self) -> bool:
        """True if this directive or any nested exception is scoped to named professionals or roles.

        Only such a provision can decide a named professional differently from their service.
        """
        todo: list[Scope] = [self.scope]
        stack = list(self.exceptions)
        while stack:
            p = stack.pop()
            todo.append(p.scope)
            stack.extend(p.exceptions)
        return any(sc.professional_ids is not None or sc.roles is not None for sc in todo)

    def withdraw(self, at: datetime) -> Directive:
        """A copy of this directive withdrawn from ``at``."""
        return replace(self, withdrawn_at=at)


@dataclass(frozen=True, slots=True)
class OverrideScope:
    recipient_agency_ids: frozenset[str]
    categories: frozenset[Category] | None = None  # None = every category

    def __post_init__(self) -> None:
        agencies = frozenset(self.recipient_agency_ids)
        if not agencies:
            raise InvalidOverrideError("a safeguarding override must name at least one recipient agency")
        object.__setattr__(self, "recipient_agency_ids", agencies)
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
        _aware(self.start, f"override {self.id} start", InvalidOverrideError)
        _aware(self.end, f"override {self.id} end", InvalidOverrideError)
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
