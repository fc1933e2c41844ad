"""Synthetic identifiers for demo and test data (never real people).

NHS numbers come from the 999 range, which is never issued to patients; UPNs use the DfE
local-authority number for Plymouth (879) with a serial that no school issues, and a valid check letter.
"""

from __future__ import annotations

from stdnum.gb import upn as stdnum_upn


def nhs_number(seed: int) -> str:
    """A modulus-11-valid 10-digit number in the 999 test range."""
    n = seed
    while True:
        body = f"999{n % 1_000_000:06d}"
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
        check = (11 - total % 11) % 11
        if check != 10:
            return body + str(check)
        n += 1


def upn(seed: int, la: int = 879) -> str:
    """A 13-character UPN with a valid mod-23 check letter."""
    rest = f"{la:03d}9{seed % 10**7:07d}A"
    return stdnum_upn.calc_check_digit(rest) + rest
