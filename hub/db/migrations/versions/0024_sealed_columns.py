"""personal data sealed at rest: timeline entries, consents, copies for recipients, alerts, birth dates

Existing clear values are sealed in place with the data keys of the key vault (hub.db.sealed): a timeline
entry and a consent directive's FHIR Consent under its subject's key; a delivery's payload, an alert's
message and details and a member's date of birth under the member's key.
``household_members.date_of_birth`` becomes text holding the sealed date. The master key comes from the
hub's settings, as for every process (it is read only when there is something to convert).

Revision ID: 0024
Revises: 0028
"""
from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0028"
branch_labels = None
depends_on = None


def _sealer(conn: sa.Connection) -> Any:
    from hub.core.settings import load_settings
    from hub.db.keyvault import ConnectionKeyVault, load_keyring
    from hub.db.sealed import Sealer

    return Sealer(ConnectionKeyVault(conn, load_keyring(load_settings())))


def _clear(conn: sa.Connection, table: sa.Table, column: sa.Column[Any], id_column: sa.Column[Any],
           key_column: sa.Column[Any]) -> list[Any]:
    """Rows whose ``column`` is still in clear."""
    return list(conn.execute(sa.select(id_column, key_column, column).where(
        column.is_not(None), sa.not_(column.startswith("sealed1:")))))


def upgrade() -> None:
    from hub.db.schema import alerts, consent_directives, deliveries, household_members, timeline_entries
    from hub.db.sealed import member_key

    conn = op.get_bind()
    with op.batch_alter_table("household_members") as batch:
        batch.alter_column("date_of_birth", type_=sa.Text(), existing_type=sa.Date(), existing_nullable=True,
                           postgresql_using="date_of_birth::text")
    T, D, M = timeline_entries.c, deliveries.c, household_members.c
    work: list[tuple[sa.Table, Any, Any, Any, Any]] = [
        (timeline_entries, col, T.event_id, T.subject, None) for col in (T.summary, T.record)]
    work += [(consent_directives, consent_directives.c.fhir_json, consent_directives.c.directive_id,
              consent_directives.c.subject, None),
             (deliveries, D.payload, D.delivery_id, D.child_id, member_key),
             (alerts, alerts.c.message, alerts.c.alert_key, alerts.c.child_id, member_key),
             (alerts, alerts.c.details, alerts.c.alert_key, alerts.c.child_id, member_key),
             (household_members, M.date_of_birth, M.member_id, M.member_id, member_key)]
    seal = None
    for table, column, id_column, key_column, key_of in work:
        for row_id, key, value in _clear(conn, table, column, id_column, key_column):
            seal = seal or _sealer(conn)
            text = date.fromisoformat(str(value)[:10]).isoformat() if column is M.date_of_birth else str(value)
            sealed = seal.seal(column, row_id, key_of(key) if key_of else key, text)
            conn.execute(table.update().where(id_column == row_id).values({column.name: sealed}))


def downgrade() -> None:
    from hub.core.errors import ErasedRecordError
    from hub.db.schema import alerts, consent_directives, deliveries, household_members, timeline_entries

    conn = op.get_bind()
    T, D, M = timeline_entries.c, deliveries.c, household_members.c
    seal = None
    opened: list[tuple[sa.Table, Any, Any, Any, str | None]] = []
    for table, column, id_column in ((timeline_entries, T.summary, T.event_id),
                                     (timeline_entries, T.record, T.event_id), (deliveries, D.payload, D.delivery_id),
                                     (consent_directives, consent_directives.c.fhir_json,
                                      consent_directives.c.directive_id),
                                     (alerts, alerts.c.message, alerts.c.alert_key),
                                     (alerts, alerts.c.details, alerts.c.alert_key),
                                     (household_members, M.date_of_birth, M.member_id)):
        for row_id, value in list(conn.execute(sa.select(id_column, column).where(column.startswith("sealed1:")))):
            seal = seal or _sealer(conn)
            try:
                text: str | None = seal.open(column, row_id, value)
            except ErasedRecordError:
                text = None if column in (M.date_of_birth, consent_directives.c.fhir_json) else \
                    "[erased]" if column in (T.summary, alerts.c.message) else "{}"
            opened.append((table, column, id_column, row_id, text))
    # the column's type first (SQLite's table copy would read a sealed value as a number), then the values
    with op.batch_alter_table("household_members") as batch:
        batch.alter_column("date_of_birth", type_=sa.Date(), existing_type=sa.Text(), existing_nullable=True,
                           postgresql_using="null")
    for table, column, id_column, row_id, text in opened:
        conn.execute(table.update().where(id_column == row_id).values(
            {column.name: date.fromisoformat(text) if column is M.date_of_birth and text else text}))
