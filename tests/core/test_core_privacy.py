"""The one identifier scrubber: every shape the log scrubber and the connector scrubber caught, and no more."""

from __future__ import annotations

import pytest

from hub.core.privacy import PERSONAL_KEYS, REDACTED, scrub, scrub_text, scrub_value

EVENT_ID = "3f2b1c9d-4a1b-9c3d-8e7f-a12345678901"
DIGEST = "0123456789abcdef" * 4


@pytest.mark.parametrize("nhs", ["9434765919", "943 476 5919", "943-476-5919", "943 4765919", "943476-5919"])
def test_nhs_numbers_plain_spaced_and_dashed(nhs: str) -> None:
    assert scrub_text(f"patient {nhs} seen") == "patient <nhs-number> seen"
    assert scrub(f"patient {nhs} seen") == f"patient {REDACTED} seen"


def test_nhs_number_beside_letters_but_not_inside_a_longer_number() -> None:
    assert scrub_text("NHS9434765919") == "NHS<nhs-number>"
    assert scrub_text("id 94347659190") == "id 94347659190"
    assert scrub_text("id 943476591") == "id 943476591"


@pytest.mark.parametrize(
    "upn",
    [
        "C873123456700",  # the official alphabet, check letter a digit
        "A123456789012",
        "C87312345670A",  # final check letter
        "c873123456700",  # lower case (the connector scrubber's pattern)
        "I12345678901O",  # letters outside the official alphabet (the connector scrubber's pattern)
    ],
)
def test_unique_pupil_numbers(upn: str) -> None:
    assert scrub_text(f"pupil {upn}.") == "pupil <upn>."
    assert scrub(f"pupil {upn}.") == f"pupil {REDACTED}."


def test_upn_must_stand_alone() -> None:
    assert scrub_text("XC873123456700") == "XC873123456700"
    assert scrub_text("C8731234567001") == "C8731234567001"


@pytest.mark.parametrize("day", ["2011-09-01", "1999-12-31", "2019-03-04"])
def test_bare_dates(day: str) -> None:
    assert scrub_text(f"born {day}") == "born <date>"
    assert scrub(f"born {day}") == f"born {REDACTED}"


def test_timestamps_and_other_years_are_not_dates_of_birth() -> None:
    for text in ("at 2026-01-02T10:00:00Z", "at 2026-01-02T10:00", "in 1899-01-01", "version 2.0.1"):
        assert scrub_text(text) == text


def test_the_connector_scrubber_example() -> None:
    assert scrub("bad 999 000 0018 and C873123456700") == "bad <redacted> and <redacted>"
    assert scrub_text("bad 999 000 0018 and C873123456700") == "bad <nhs-number> and <upn>"


def test_uuids_and_hex_digests_are_left_whole() -> None:
    for text in (EVENT_ID, DIGEST, f"share {EVENT_ID} after {DIGEST}", EVENT_ID.upper()):
        assert scrub_text(text) == text
        assert scrub(text) == text


def test_identifiers_beside_opaque_ids_are_still_scrubbed() -> None:
    assert scrub_text(f"{EVENT_ID} for 943 476 5919 born 2011-09-01") == f"{EVENT_ID} for <nhs-number> born <date>"
    assert scrub(f"C873123456700 {DIGEST} 9434765919") == f"{REDACTED} {DIGEST} {REDACTED}"


def test_text_without_digits_is_returned_as_is() -> None:
    text = "no identifiers here"
    assert scrub_text(text) is text


def test_personal_keys_and_nested_values() -> None:
    for key in ("name", "dob", "date_of_birth", "nhs_number", "upn", "postcode", "identifier_value"):
        assert key in PERSONAL_KEYS
    value = {"Name": "Cerys", "note": "born 2019-03-04", "items": [{"dob": "x"}, "9434765919", 3], "n": 7}
    assert scrub_value(value) == {
        "Name": REDACTED, "note": "born <date>", "items": [{"dob": REDACTED}, "<nhs-number>", 3], "n": 7,
    }
    assert scrub_value(("943 476 5919",)) == ["<nhs-number>"]
