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
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.health.directory import ReferenceDirectory
from connectors.results import Remembered
from hub.db.schema import fhir_references
from hub.db.store import Store, utcnow

CHUNK = 500  # ids per IN list (within SQLite's and PostgreSQL's bind limits)


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
        """Keep each resource, replacing an older or equal version of it: one transaction, one query for
        the versions kept per resource type and one statement each for the inserts and the updates."""
        latest: dict[tuple[str, str], Remembered] = {}
        for item in items:  # in order: a later item replaces an earlier one of at most its version
            key = (item.resource_type, item.resource_id)
            if key not in latest or item.version >= latest[key].version:
                latest[key] = item
        if not latest:
            return
        t = fhir_references.c
        now = utcnow()
        with self.store.engine.begin() as conn:
            kept = self._versions(conn, list(latest))
            inserts, updates = [], []
            for key, item in latest.items():
                values = self._values(item, now)
                if key not in kept:
                    inserts.append({"agency": self.agency, "resource_type": key[0], "resource_id": key[1], **values})
                elif item.version >= kept[key]:
                    updates.append({"b_type": key[0], "b_id": key[1], **{f"b_{k}": v for k, v in values.items()}})
            if inserts:
                conn.execute(fhir_references.insert(), inserts)
            if updates:
                conn.execute(fhir_references.update().where(
                    t.agency == self.agency, t.resource_type == sa.bindparam("b_type"),
                    t.resource_id == sa.bindparam("b_id")).values(
                    {k: sa.bindparam(f"b_{k}") for k in ("subject", "summary", "version", "updated_at")}), updates)

    def _values(self, item: Remembered, now: datetime) -> dict[str, Any]:
        """The row's values: a Patient's identity only as its pseudonym, the rest of the summary as JSON."""
        summary = dict(item.summary)
        identity = summary.pop("identity", None)
        subject = None
        if item.resource_type == "Patient" and identity:
            subject = self.pseudonymise(str(identity["system"]), str(identity["value"]))
        return {"subject": subject, "summary": json.dumps(summary, sort_keys=True), "version": item.version,
                "updated_at": now}

    def _versions(self, conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The versions this agency's directory holds of ``keys`` (resource type, id)."""
        t = fhir_references.c
        out: dict[tuple[str, str], int] = {}
        for resource_type in sorted({k[0] for k in keys}):
            ids = [k[1] for k in keys if k[0] == resource_type]
            for i in range(0, len(ids), CHUNK):
                out.update(((resource_type, r.resource_id), int(r.version)) for r in conn.execute(
                    sa.select(t.resource_id, t.version).where(t.agency == self.agency, t.resource_type == resource_type,
                                                            t.resource_id.in_(ids[i:i + CHUNK]))))
        return out
