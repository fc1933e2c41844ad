"""Every table holding a person's or a family's id says what erasure and retention do with it.

Erasure (hub.governance.erasure) and retention (hub.governance.retention) find their tables through
these tags, so a new table with a pseudonym, member or household column cannot be forgotten: it
fails here until it is tagged.
"""

from __future__ import annotations

import sqlalchemy as sa

from hub.db.schema import DELETE, EVENT, HOUSEHOLD, KEEP, MARK, MEMBER, SHRED, SUBJECT, metadata

ERASE_ACTIONS = {DELETE, MARK, SHRED, KEEP}
PERSONAL_KINDS = {SUBJECT, MEMBER, HOUSEHOLD}
ERASE_BY_KINDS = {SUBJECT, EVENT, MEMBER}


def _looks_personal(column: sa.Column[object]) -> bool:
    name = column.name
    return name in ("subject", "key") or name.endswith(("household_id", "child_id", "member_id", "_household",
                                                        "_child"))


def test_every_personal_column_is_tagged() -> None:
    untagged = {f"{t.name}.{c.name}" for t in metadata.sorted_tables for c in t.columns
                if _looks_personal(c) and c.name not in t.info.get("personal", {})}
    assert not untagged, f"tag these columns in hub/db/schema.py (info['personal']): {sorted(untagged)}"


def test_tags_name_real_columns_and_known_kinds() -> None:
    for table in metadata.sorted_tables:
        personal = table.info.get("personal", {})
        assert set(personal) <= set(table.c.keys()), table.name
        assert set(personal.values()) <= PERSONAL_KINDS, table.name
        if personal:
            assert table.info.get("erase") in ERASE_ACTIONS, f"{table.name}: say what an erasure does (erase=...)"
        erase_by = table.info.get("erase_by", {})
        assert set(erase_by) <= ERASE_BY_KINDS, table.name
        assert set(erase_by.values()) <= set(table.c.keys()), table.name
        if "retain_by" in table.info:
            assert table.info["retain_by"] in table.c, table.name


def test_deleted_tables_are_erased_by_every_subject_and_member_column() -> None:
    for table in metadata.sorted_tables:
        if table.info.get("erase") not in (DELETE, MARK):
            continue
        erase_by = table.info.get("erase_by", {})
        assert erase_by, f"{table.name}: erase_by is needed to find the person's rows"
        for name, kind in table.info["personal"].items():
            if kind in (SUBJECT, MEMBER):
                assert erase_by.get(kind) == name, f"{table.name}.{name}: an erasure must select rows by it"


def test_rows_of_an_event_go_with_the_event() -> None:
    """A table erased by event id also loses its rows when retention expires the event."""
    for table in metadata.sorted_tables:
        column = table.info.get("erase_by", {}).get(EVENT)
        if column is not None:
            assert table.info.get("retain_by") == column, table.name


def test_what_an_erasure_keeps_is_a_deliberate_list() -> None:
    kept = {t.name for t in metadata.sorted_tables if t.info.get("erase") == KEEP}
    # the erasure's own register and guard, the append-only audit chain (pseudonymous ids only), and the
    # household and its caseloads, which belong to the family rather than to the person erased; the audit
    # dead letters are part of the trail (hub ids and the failed check, never a value)
    assert kept == {"erasures", "erased_subjects", "audit_log", "audit_dead_letters", "households", "caseloads"}
