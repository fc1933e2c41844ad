"""A household's type for the KPIs, from its enrolled members and linked children (docs/operations.md, "KPIs:
definitions")."""

from __future__ import annotations

from hub.stream.household_types import TYPES, Member, household_type

MUM = Member("m-1", "adult", parental_responsibility=True)
DAD = Member("m-2", "adult", parental_responsibility=True)
NAN = Member("m-3", "adult", parental_responsibility=False)


def child(n: int, corporate_parent: str | None = None) -> Member:
    return Member(f"c-{n}", "child", parental_responsibility=False, corporate_parent=corporate_parent)


def test_parents_are_the_adults_with_parental_responsibility_and_children_are_enrolled_or_linked() -> None:
    assert household_type([MUM, NAN, child(1)]) == "one_parent_one_child"  # a grandmother is not a parent
    assert household_type([MUM, DAD], linked_children=["c-1"]) == "two_parents_one_child"
    assert household_type([MUM, DAD, NAN, child(1)], linked_children=["c-1", "c-2"]) == \
        "two_parents_two_or_more_children"  # the child enrolled and linked counts once
    assert household_type([], linked_children=["c-1"]) == "no_parent_enrolled_one_child"
    assert household_type([child(1), child(2)]) == "no_parent_enrolled_two_or_more_children"


def test_a_looked_after_child_makes_the_household_looked_after_whoever_else_is_enrolled() -> None:
    assert household_type([MUM, DAD, child(1), child(2, corporate_parent="W06000022")]) == "looked_after_child"
    assert household_type([NAN, child(1, corporate_parent="W06000022")]) == "looked_after_child"


def test_every_type_is_one_of_the_seven_documented() -> None:
    seen = {household_type(m, linked) for m in ([], [MUM], [MUM, DAD], [child(9, "W06000022")])
            for linked in ([], ["c-1"], ["c-1", "c-2"])}
    assert seen <= set(TYPES) and len(TYPES) == 7
    assert set(TYPES) - seen == set()
