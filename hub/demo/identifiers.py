"""Synthetic identifiers for demo and test data (never real people).

NHS numbers come from the 999 range, which is never issued to patients; UPNs use the DfE
local-authority number for Plymouth (879) with a serial that no school issues, and a valid check letter.
"""

from __future__ import annotations

from stdnum.gb import upn as stdnum_upn


def nhs_number(seed: int) -> str:
    """A modulus-11-valid 10-digit number in the 999 test range, one per seed.

    Seed ``s`` takes the body ``2s`` (mod 10**6), or ``2s + 1`` where ``2s`` has no valid check
    digit (its last digit is even, so adding one changes the weighted sum by 2 and the check digit
    is then valid). Seeds less than 500,000 apart therefore never share a number: neighbouring
    seeds are often used for siblings, who must not be given one child's identifier.
    """
    for n in (2 * seed, 2 * seed + 1):
        body = f"999{n % 1_000_000:06d}"
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
        check = (11 - total % 11) % 11
        if check != 10:
            return body + str(check)
    raise AssertionError("unreachable: one of two neighbouring bodies has a check digit")


def upn(seed: int, la: int = 879) -> str:
    """A 13-character UPN with a valid mod-23 check letter."""
    rest = f"{la:03d}9{seed % 10**7:07d}A"
    return stdnum_upn.calc_check_digit(rest) + rest
