"""Consent directives: what a parent or young person has permitted or refused, and for whom.

A :class:`Directive` permits or denies, over a :class:`Scope` (who may receive, which categories,
for which purposes, issued when), with nested :class:`Provision` exceptions of the opposite
decision over narrower scopes. A scope's :meth:`Scope.specificity` ranks provisions for rule 5.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from consent.errors import InvalidDirectiveError
from consent.model import (
    Category,
    DirectiveDecision,
    Grantor,
    Information,
    Purpose,
    Recipient,
    Sector,
    require_aware,
)


@dataclass(frozen=True, slots=True)
class Period:
    """Half-open interval [start, end); ``None`` means unbounded on that side."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.start, "period start", InvalidDirectiveError)
        require_aware(self.end, "period end", InvalidDirectiveError)
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise InvalidDirectiveError("a period must start before it ends")

    def contains(self, t: datetime) -> bool:
        return (self.start is None or self.start <= t) and (self.end is None or t < self.end)

    def within(self, other: Period) -> bool:
        """True if this period lies inside ``other``."""
        if other.start is not None and (self.start is None or self.start < other.start):
            return False
        return not (other.end is not None and (self.end is None or self.end > other.end))


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
        for name in _SET_DIMENSIONS:
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

    def matches_static(self, recipient: Recipient, purpose: Purpose, category: Category) -> bool:
        """The time-independent part of :meth:`matches` (recipient, purpose, category)."""
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
        if self.categories is not None and category not in self.categories:
            return False
        return self.purposes is None or purpose in self.purposes

    def matches(self, info: Information, recipient: Recipient, purpose: Purpose, at: datetime) -> bool:
        if not self.matches_static(recipient, purpose, info.category):
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
        require_aware(self.made_at, f"directive {self.id} made_at", InvalidDirectiveError)
        require_aware(self.withdrawn_at, f"directive {self.id} withdrawn_at", InvalidDirectiveError)
        require_aware(self.confirmed_by_young_person_at, f"directive {self.id} confirmation", InvalidDirectiveError)
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
