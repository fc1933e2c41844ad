"""Rule 5 over one child's directives: the most specific applicable provision wins.

:class:`DirectiveSet` holds a child's validated directives and overrides (built by
:meth:`consent.engine.ConsentEngine.compile`) and evaluates them for one share: which directives
apply (rule 9: in force, inside their periods), the deepest matching nested exception inside each,
permits that do not name a restricted category set aside (rule 4), then the most specific provision
across directives, deny winning at equal specificity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from consent.directives import Directive, Provision, Scope
from consent.model import (
    Category,
    Child,
    DirectiveDecision,
    Grantor,
    Information,
    Override,
    Purpose,
    Recipient,
)

_DENY = DirectiveDecision.DENY
_PERMIT = DirectiveDecision.PERMIT


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of the consent directives alone (rule 5): the most specific applicable provision."""

    decision: DirectiveDecision | None
    directive_ids: tuple[str, ...] = ()
    specificity: tuple[int, int] = (-1, -1)
    deny_ids: tuple[str, ...] = ()  # every directive whose applicable provision refuses the share


_NO_EVALUATION = Evaluation(None)


def _eval_node(
    decision: DirectiveDecision,
    scope: Scope,
    exceptions: tuple[Provision, ...],
    depth: int,
    info: Information,
    recipient: Recipient,
    purpose: Purpose,
    at: datetime,
    restricted: bool,
) -> tuple[int, DirectiveDecision, Scope] | None:
    """Deepest applicable provision of one directive tree (equal depth: deny wins).

    A permit provision that does not name a restricted category explicitly is not applicable to
    information in that category (rule 4); its parent (a deny) then applies instead.
    """
    if not scope.matches(info, recipient, purpose, at):
        return None
    return _eval_children(decision, scope, exceptions, info, recipient, purpose, at, restricted, depth)


def _eval_children(
    decision: DirectiveDecision,
    scope: Scope,
    exceptions: tuple[Provision, ...],
    info: Information,
    recipient: Recipient,
    purpose: Purpose,
    at: datetime,
    restricted: bool,
    depth: int = 0,
) -> tuple[int, DirectiveDecision, Scope] | None:
    """As :func:`_eval_node` for a provision whose own scope is already known to match."""
    best: tuple[int, DirectiveDecision, Scope] | None = None
    for exc in exceptions:
        r = _eval_node(
            exc.decision, exc.scope, exc.exceptions, depth + 1, info, recipient, purpose, at, restricted
        )
        if r is not None and (best is None or r[0] > best[0] or (r[0] == best[0] and r[1] is _DENY)):
            best = r
    if best is not None:
        return best
    if (
        decision is _PERMIT
        and restricted
        and (scope.categories is None or info.category not in scope.categories)
    ):
        return None
    return (depth, decision, scope)


@dataclass(frozen=True, slots=True)
class DirectiveSet:
    """The validated directives and overrides of one child, pre-indexed for fast decisions.

    Build with :meth:`ConsentEngine.compile`. Immutable apart from an internal candidate cache keyed
    by (recipient, purpose, category, grantors), which only narrows which directives are examined.
    """

    child: Child
    directives: tuple[Directive, ...]
    overrides: tuple[Override, ...]
    restricted_categories: frozenset[Category]
    _cache: dict[tuple[object, ...], tuple[Directive, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def _candidates(
        self, recipient: Recipient, purpose: Purpose, category: Category, young_person_only: bool
    ) -> tuple[Directive, ...]:
        key = (recipient, purpose, category, young_person_only)
        found = self._cache.get(key)
        if found is None:
            found = tuple(
                d
                for d in self.directives
                if d.scope.matches_static(recipient, purpose, category)
                and (not young_person_only or d.made_by_role is Grantor.YOUNG_PERSON)
            )
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = found
        return found

    def evaluate(
        self,
        info: Information,
        recipient: Recipient,
        purpose: Purpose,
        at: datetime,
        *,
        young_person_only: bool = False,
    ) -> Evaluation:
        """Apply rule 5 (most specific directive wins; equal specificity: deny wins) and rule 9."""
        restricted = info.category in self.restricted_categories
        best_key: tuple[tuple[int, int], bool] | None = None
        best_ids: list[str] = []
        deny_ids: list[str] = []
        for d in self._candidates(recipient, purpose, info.category, young_person_only):
            if not (d.made_at <= at and (d.withdrawn_at is None or at < d.withdrawn_at)):
                continue
            scope = d.scope
            # the static dimensions of the root were checked when the candidates were cached
            if scope.period is not None and not scope.period.contains(at):
                continue
            if scope.data_period is not None and not scope.data_period.contains(info.issued_at):
                continue
            if d.exceptions:
                r = _eval_children(d.decision, scope, d.exceptions, info, recipient, purpose, at, restricted)
            elif (
                d.decision is _PERMIT
                and restricted
                and (scope.categories is None or info.category not in scope.categories)
            ):
                continue
            else:
                r = (0, d.decision, scope)
            if r is None:
                continue
            is_deny = r[1] is _DENY
            if is_deny:
                deny_ids.append(d.id)
            key = (r[2].specificity(), is_deny)
            if best_key is None or key > best_key:
                best_key = key
                best_ids = [d.id]
            elif key == best_key:
                best_ids.append(d.id)
        if best_key is None:
            return _NO_EVALUATION
        return Evaluation(
            decision=_DENY if best_key[1] else _PERMIT,
            directive_ids=tuple(sorted(best_ids)),
            specificity=best_key[0],
            deny_ids=tuple(sorted(deny_ids)),
        )
