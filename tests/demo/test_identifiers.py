"""The synthetic identifiers the demo and the tests give children."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.identifiers import nhs_number as checked_nhs_number
from hub.demo.identifiers import nhs_number


@given(st.integers(min_value=0, max_value=2_000_000))
def test_every_seed_gives_a_valid_number_in_the_test_range(seed: int) -> None:
    number = nhs_number(seed)
    assert number.startswith("999") and len(number) == 10
    assert checked_nhs_number(number).value == number  # the connectors' modulus-11 check accepts it


def test_neighbouring_seeds_never_share_a_number() -> None:
    # siblings are often given seed and seed + 1; one number on two children would move records
    numbers = [nhs_number(seed) for seed in range(0, 500_000)]
    assert len(set(numbers)) == len(numbers)
