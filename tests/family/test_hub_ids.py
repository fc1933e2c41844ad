"""Hub ids are pseudonymous and must never read as an NHS number: the privacy scrubber, the log scans and an
auditor all take ten digits in a row for one, and a generated id that held them would be scrubbed from the
audit trail or flagged as a leak."""

from __future__ import annotations

import re

from hub.family.enrolment import new_id


def test_generated_ids_never_hold_a_long_run_of_digits() -> None:
    ids = [new_id("c") for _ in range(20_000)]  # plain 16-hex ids would hold 8 digits in a row about 1 in 5
    assert not [i for i in ids if re.search(r"\d{8}", i)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"c-[0-9a-f]{16}", i) for i in ids)
