from __future__ import annotations

import pytest

from connectors.identifiers import IdentifierError, la_person_id, nhs_number, pupil_number, subject_ref
from hub.core.privacy import scrub


def test_nhs_number_normalised_and_checked():
    ref = nhs_number("999 000 0018")
    assert (ref.system, ref.value) == ("nhs-number", "9990000018")
    assert "9990000018" not in repr(ref)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9990000019", "nhs-number identifier fails the modulus-11 check"),
        ("99900000", "nhs-number identifier has the wrong length"),
        ("", "nhs-number identifier is missing"),
        ("99900000AB", "nhs-number identifier has characters that are not allowed"),
    ],
)
def test_bad_nhs_numbers(value, message):
    with pytest.raises(IdentifierError) as err:
        nhs_number(value)
    assert str(err.value) == message
    if value:
        assert value not in str(err.value)


def test_upn():
    assert pupil_number("c873 1234 5670 0").value == "C873123456700"
    with pytest.raises(IdentifierError, match="modulus-23") as err:
        pupil_number("C873123456701")
    assert "C873123456701" not in str(err.value)


def test_la_person_id_and_systems():
    assert la_person_id(" LA-100234 ").value == "LA-100234"
    with pytest.raises(IdentifierError, match="not allowed"):
        la_person_id("LA/100234")
    assert subject_ref("https://fhir.nhs.uk/Id/nhs-number", "9990000018").system == "nhs-number"
    with pytest.raises(IdentifierError, match="not one the hub links"):
        subject_ref("passport", "X")


def test_scrub():
    assert scrub("bad 999 000 0018 and C873123456700") == "bad <redacted> and <redacted>"
