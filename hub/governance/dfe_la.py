"""The DfE local-authority number a statutory return names in ``Header/Source/LEA``, checked.

The SEN2 survey and the children in need census are collections of local authorities in **England**:
their ``LEA`` is the authority's 3-digit DfE local-authority number (the 2024 DfE SEN2 schema's
pattern ``\\d{3}``), which the person making the return gives (``--lea`` on the command line, ``?lea=``
over HTTP); it is not the agency id the authority's events carry (an ONS code such as ``E09000001``).

:func:`england_lea` refuses, with a message naming the LEA, anything that is not 3 digits, a number
that is not an English authority's, and an agency whose ONS code says it is in Wales, Scotland or
Northern Ireland (the demo's Newport City Council, ``W06000022``, is Welsh: Welsh authorities make
neither return).

Source of the numbers: the DfE local-authority codes in data-to-insight's SEN2 app
(``apps/015_SEN2_app/la_names_lookup.csv``, 2025). Numbers of authorities formed after that list
(839, 942, 943) are NOT CONFIRMED by it and are accepted as the DfE has published them since.
"""

from __future__ import annotations

import re

from hub.core.errors import Problem, ValidationError

#: DfE numbers of local authorities in England (data-to-insight's list; see the module's docstring).
_LISTED = (
    "201 202 203 204 205 206 207 208 209 210 211 212 213 301 302 303 304 305 306 307 308 309 310 311 312 313",
    "314 315 316 317 318 319 320 330 331 332 333 334 335 336 340 341 342 343 344 350 351 352 353 354 355 356",
    "357 358 359 370 371 372 373 380 381 382 383 384 390 391 392 393 394 420 800 801 802 803 805 806 807 808",
    "810 811 812 813 815 816 821 822 823 825 826 830 831 836 837 838 840 841 845 846 850 851 852 855 856 857",
    "860 861 865 866 867 868 869 870 871 872 873 874 876 877 878 879 880 881 882 883 884 885 886 887 888 889",
    "890 891 892 893 894 895 896 908 909 916 919 921 925 926 928 929 931 933 935 936 937 938 940 941",
)
#: NOT CONFIRMED by that list: BCP (839, 2019), Cumberland (942) and Westmorland and Furness (943, 2023),
#: formed after it, as the DfE has numbered them since.
ENGLISH_LA = frozenset(" ".join(_LISTED).split()) | {"839", "942", "943"}

_NATION = {"W": "Wales", "S": "Scotland", "N": "Northern Ireland"}
_ONS = re.compile(r"^([EWSN])\d{8}$")


def england_lea(lea: str | None, agency_id: str, collection: str) -> str:
    """``lea`` when it is an English authority's DfE number and the agency is not outside England;
    else a :class:`ValidationError` saying why, naming the LEA (and the agency)."""
    ons = _ONS.match(agency_id)
    if ons and ons.group(1) in _NATION:
        nation = _NATION[ons.group(1)]
        shown = f"LEA {lea[:12]}" if lea else "no LEA"
        why = f"{shown}: agency {agency_id} is an authority in {nation} (its ONS code); "
        raise ValidationError([Problem("lea", why + f"{collection} is a return of local authorities in England")],
                              title=f"{collection} is an England return")
    if lea is None or not re.fullmatch(r"\d{3}", lea):
        shown = "no LEA" if not lea else f"LEA {lea[:12]!r}"
        raise ValidationError([Problem("lea", f"{shown}: give the authority's 3-digit DfE local-authority number "
                                              "(for example 201, City of London)")],
                              title="The return needs the DfE local-authority number")
    if lea not in ENGLISH_LA:
        raise ValidationError([Problem("lea", f"LEA {lea} is not the DfE number of a local authority in England; "
                                              f"{collection} is a return of local authorities in England")],
                              title=f"{collection} is an England return")
    return lea
