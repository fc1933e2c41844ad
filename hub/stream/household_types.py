"""A household's type for the KPIs, from what the hub holds of it (enrolment and identity links). Pure.

The type is one of :data:`TYPES`, decided in this order:

* ``looked_after_child`` — a child of the household is looked after (enrolled with a corporate parent: the
  local authority that shares parental responsibility), whatever else the household holds;
* otherwise the adults enrolled with parental responsibility — ``no_parent_enrolled`` (none: the coordinator
  has enrolled only the children, or the children were only linked by their identifiers), ``one_parent``
  (one), ``two_parents`` (two or more) — joined to the number of children (enrolled or linked):
  ``one_child`` or ``two_or_more_children``.

So ``one_parent_two_or_more_children`` is a single parent with at least two children on the hub. The type is
the household as enrolled when the KPIs are asked for: the hub keeps no history of who lived where, so a
household's figures for an earlier period count under its type today.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LOOKED_AFTER = "looked_after_child"
PARENTS = ("no_parent_enrolled", "one_parent", "two_parents")
CHILDREN = ("one_child", "two_or_more_children")
TYPES: tuple[str, ...] = (LOOKED_AFTER, *(f"{p}_{c}" for p in PARENTS for c in CHILDREN))


@dataclass(frozen=True)
class Member:
    """A household member as enrolment holds it."""
    member_id: str
    kind: str  # child | adult
    parental_responsibility: bool
    corporate_parent: str | None = None


def household_type(members: Iterable[Member], linked_children: Iterable[str] = ()) -> str:
    """The type of a household with these enrolled ``members`` and children linked by identifier."""
    members = list(members)
    if any(m.kind == "child" and m.corporate_parent for m in members):
        return LOOKED_AFTER
    parents = sum(1 for m in members if m.kind != "child" and m.parental_responsibility)
    children = {m.member_id for m in members if m.kind == "child"} | set(linked_children)
    return f"{PARENTS[min(parents, 2)]}_{CHILDREN[0] if len(children) <= 1 else CHILDREN[1]}"
