"""One agency's remembered FHIR resources (``fhir_references``): versions, agencies and identities."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from connectors.results import Remembered
from hub.db.schema import fhir_references
from hub.db.store import Store
from hub.ingest.references import SqlReferenceDirectory

NHS = "9990000026"


def pseudonym(system: str, value: str) -> str:
    return f"pseudo-{len(system)}-{value[::-1]}"


def patient(rid: str, version: int, nhs: str = NHS, **summary: str) -> Remembered:
    return Remembered("Patient", rid, {"identity": {"system": "nhs-number", "value": nhs}, **summary}, version)


def test_a_batch_keeps_the_highest_version_of_each_resource_and_never_an_older_one(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    trust = SqlReferenceDirectory(store, pseudonym, "7A6")
    other = SqlReferenceDirectory(store, pseudonym, "7A4")
    trust.remember_all([patient("p1", 2, gender="female"), patient("p1", 1, gender="male"),
                        Remembered("Organization", "o1", {"ods": "7A6"}, 1)])
    other.remember_all([patient("p1", 1, nhs="9990000034")])
    assert trust.lookup("Patient", "p1") == {"gender": "female", "pseudonym": pseudonym("nhs-number", NHS)}
    assert other.lookup("Patient", "p1") == {"pseudonym": pseudonym("nhs-number", "9990000034")}
    assert trust.lookup("Organization", "o1") == {"ods": "7A6"}

    trust.remember_all([patient("p1", 1, gender="unknown")])  # an older version changes nothing
    assert trust.lookup("Patient", "p1")["gender"] == "female"  # type: ignore[index]
    trust.remember_all([patient("p1", 2, gender="other"), patient("p2", 1)])  # the same version replaces
    assert trust.lookup("Patient", "p1")["gender"] == "other"  # type: ignore[index]
    assert trust.lookup("Patient", "p2") is not None and trust.lookup("Patient", "p3") is None
    trust.remember_all([])

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(fhir_references)).all()
    assert len(rows) == 4
    assert all(NHS not in str(tuple(r)) for r in rows)  # the identity only as its pseudonym
