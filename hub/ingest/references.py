"""The hub's :class:`connectors.health.directory.ReferenceDirectory`: one agency's FHIR context resources.

Rows of ``fhir_references`` are keyed ``(agency, resourceType, id)``, so an agency's ``Patient/123``
never resolves another agency's. A Patient is stored as the pseudonym of its identity (NHS number,
or a local identifier as system ``other``), computed with the hub's :class:`Pseudonymiser`: neither
the identifier in clear nor a name is kept. Other resources keep the summary the connector made
(identifiers, names, codes, references between them). A row is replaced only by a version at least
as high, so a resend of an older version changes nothing. Erasing a person deletes their Patient rows.

The agency is the authenticated sender (the token's subject) on the HTTP routes and ``--agency`` for
``hub ingest``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from connectors.health.directory import ReferenceDirectory
from connectors.results import Remembered
from hub.db.schema import fhir_references
from hub.db.store import Store, utcnow


class SqlReferenceDirectory(ReferenceDirectory):
    def __init__(self, store: Store, pseudonymise: Callable[[str, str], str], agency: str) -> None:
        self.store = store
        self.pseudonymise = pseudonymise
        self.agency = agency

    def lookup(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        t = fhir_references.c
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.subject, t.summary).where(
                t.agency == self.agency, t.resource_type == resource_type, t.resource_id == resource_id)).first()
        if row is None:
            return None
        summary: dict[str, Any] = json.loads(row.summary)
        if resource_type == "Patient":
            summary["pseudonym"] = row.subject
        return summary

    def remember(self, resource_type: str, resource_id: str, summary: dict[str, Any], version: int) -> None:
        self.remember_all([Remembered(resource_type, resource_id, summary, version)])

    def remember_all(self, items: Iterable[Remembered]) -> None:
        """Keep each resource, replacing an older or equal version of it (one transaction)."""
        t = fhir_references.c
        with self.store.engine.begin() as conn:
            for item in items:
                kept = dict(item.summary)
                subject = None
                identity = kept.pop("identity", None)
                if item.resource_type == "Patient" and identity:
                    subject = self.pseudonymise(str(identity["system"]), str(identity["value"]))
                key = (t.agency == self.agency, t.resource_type == item.resource_type,
                       t.resource_id == item.resource_id)
                current = conn.execute(sa.select(t.version).where(*key)).scalar()
                values = {"subject": subject, "summary": json.dumps(kept, sort_keys=True),
                          "version": item.version, "updated_at": utcnow()}
                if current is None:
                    conn.execute(fhir_references.insert().values(
                        agency=self.agency, resource_type=item.resource_type, resource_id=item.resource_id,
                        **values))
                elif item.version >= current:
                    conn.execute(fhir_references.update().where(*key).values(**values))
