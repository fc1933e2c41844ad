"""Column values sealed at rest (hub.db.sealed) with data keys from the SQL key vault, on a real database: a
sealed value opens only in its own table, column and row; a shredded key reads as erased; the migration
seals what an older hub kept in clear."""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import date

import pytest
import sqlalchemy as sa
from alembic import command

from hub.core.errors import ErasedRecordError, UnsealError
from hub.db.keyvault import SqlKeyVault
from hub.db.schema import deliveries, household_members, timeline_entries
from hub.db.schema_version import alembic_config
from hub.db.sealed import ERASED, PREFIX, Sealer, member_key, sealer, sealer_of
from hub.db.store import Store, make_engine, migrate
from hub.wire.sealing import MasterKeyring
from tests.support import key_queries

T, M = timeline_entries.c, household_members.c
SUBJECT = "s-aaaaaaaaaaaaaaaaaaaaaaaaaa"
TITLE = "Single plan for Cerys and family"


@pytest.fixture
def store(db_url: str) -> Store:
    engine = make_engine(db_url)
    migrate(engine)
    return Store(engine, SqlKeyVault(Store(engine), MasterKeyring.from_text(secrets.token_hex(32))))


def test_a_sealed_value_opens_in_its_own_row_and_holds_nothing_in_clear(store: Store) -> None:
    seal = sealer(store)
    value = seal.seal(T.summary, "e-1", SUBJECT, TITLE)
    assert value.startswith(PREFIX) and "Cerys" not in value and SUBJECT not in value.removeprefix(PREFIX)
    assert seal.open(T.summary, "e-1", value) == TITLE
    assert seal.seal(T.summary, "e-1", SUBJECT, TITLE) != value  # a fresh nonce each time
    born = seal.seal_date(M.date_of_birth, "c-1", member_key("c-1"), date(2024, 5, 6))
    assert born is not None and "2024" not in born and "06/05" not in born
    assert seal.date(M.date_of_birth, "c-1", born) == date(2024, 5, 6)
    assert seal.seal_date(M.date_of_birth, "c-1", member_key("c-1"), None) is None


@pytest.mark.parametrize("where", ["another row", "another column", "another table", "altered", "in clear"])
def test_a_moved_altered_or_clear_value_is_refused_naming_the_column_not_the_value(store: Store, where: str) -> None:
    seal = sealer(store)
    value = seal.seal(T.record, "e-1", SUBJECT, json.dumps({"title": TITLE}))
    body = value.removeprefix(PREFIX)
    column, row, tried = T.record, "e-1", value
    if where == "another row":
        row = "e-2"
    elif where == "another column":
        column = T.summary
    elif where == "another table":
        column = deliveries.c.payload
    elif where == "altered":
        tried = PREFIX + body[:-6] + ("A" if body[-6] != "A" else "B") + body[-5:]
    else:
        tried = json.dumps({"title": TITLE})
    with pytest.raises(UnsealError) as caught:
        seal.open(column, row, tried)
    message = str(caught.value)
    assert f"{column.table.name}.{column.name}" in message and row in message
    assert "Cerys" not in message and body not in message
    assert seal.open(T.record, "e-1", value)  # the value itself is intact


def test_a_shredded_key_reads_as_erased_and_a_new_key_seals_what_comes_after(store: Store) -> None:
    seal = sealer(store)
    summary = seal.seal(T.summary, "e-1", SUBJECT, TITLE)
    record = seal.seal_json(T.record, "e-1", SUBJECT, {"title": TITLE})
    born = seal.seal_date(M.date_of_birth, "c-1", member_key("c-1"), date(2024, 5, 6))
    assert isinstance(store.vault, SqlKeyVault)
    with store.engine.begin() as conn:
        assert store.vault.shred(conn, [SUBJECT, member_key("c-1")]) == 2
    with pytest.raises(ErasedRecordError):
        seal.open(T.summary, "e-1", summary)
    assert seal.text(T.summary, "e-1", summary) == ERASED
    assert seal.json(T.record, "e-1", record, erased={}) == {}
    assert seal.date(M.date_of_birth, "c-1", born) is None
    # a later record of the same subject is sealed with a new key version and opens
    later = seal.seal(T.summary, "e-3", SUBJECT, "Physiotherapy report")
    assert seal.open(T.summary, "e-3", later) == "Physiotherapy report"


def test_a_prefetch_loads_many_subjects_keys_in_one_query_and_never_a_shredded_one(store: Store) -> None:
    """A pass about to open many subjects' values (the sharing step reading children's records) asks the key vault
    once for their keys, not once a subject; a shredded key is not loaded, so its values still read as erased."""
    seal = sealer(store)
    subjects = [f"s-{n:026d}" for n in range(40)]
    values = {s: seal.seal(T.record, f"e-{s}", s, json.dumps({"n": s})) for s in subjects}
    assert isinstance(store.vault, SqlKeyVault)
    with store.engine.begin() as conn:
        assert store.vault.shred(conn, subjects[:1]) == 1
    fresh = Sealer(SqlKeyVault(store, store.vault.keyring))  # another process: nothing cached
    with key_queries(store) as asked:
        fresh.prefetch([*values.values(), None, PREFIX + "not base64!", "in clear"])
        assert len(asked) == 1
        opened = {s: fresh.json(T.record, f"e-{s}", v, erased="erased") for s, v in values.items()}
        assert len(asked) == 2  # every live key came with the prefetch: only the shredded one is asked again
    assert opened[subjects[0]] == "erased"
    assert all(opened[s] == {"n": s} for s in subjects[1:])


def test_a_batch_about_to_be_sealed_loads_its_subjects_current_keys_in_one_query(store: Store) -> None:
    """An ingest request seals each event under its subject's current key: a process whose cache is cold (or
    expired) asks for the batch's keys once; a subject whose key was shredded, or who has none yet, still gets a
    new key version from ``current``."""
    assert isinstance(store.vault, SqlKeyVault)
    subjects = [f"s-{n:026d}" for n in range(30)]
    made = {s: store.vault.current(s).version for s in subjects}
    with store.engine.begin() as conn:
        assert store.vault.shred(conn, subjects[:1]) == 1
    fresh = SqlKeyVault(store, store.vault.keyring)
    with key_queries(store) as asked:
        fresh.prefetch_current([*subjects, "s-new-subject"])
        assert len(asked) == 1
        assert all(fresh.current(s).version == made[s] for s in subjects[1:])
        assert len(asked) == 1  # every live current key came with the prefetch
    assert fresh.current(subjects[0]).version == made[subjects[0]] + 1  # shredded: the next version is made
    assert fresh.current("s-new-subject").version == 1
    seal = Sealer(fresh)
    value = seal.seal(T.summary, "e-1", subjects[1], TITLE)
    assert sealer(store).open(T.summary, "e-1", value) == TITLE  # sealed with the key the other process holds


def test_payloads_sealed_in_a_write_transaction_find_their_childrens_keys_in_one_query(store: Store) -> None:
    """The sharing step seals a pass's new payloads in its transaction, each under its child's key: it asks for
    the children's keys once, not once a child; a child whose key was shredded, or who has none yet, gets a new
    key version there, and what is sealed opens with the keys every other process reads."""
    seal = sealer(store)
    assert isinstance(store.vault, SqlKeyVault)
    children = [member_key(f"c-{n}") for n in range(25)]
    made = {c: store.vault.current(c).version for c in children}
    with store.engine.begin() as conn:
        assert store.vault.shred(conn, children[:1]) == 1
    with store.engine.begin() as conn, key_queries(store) as asked:
        in_tx = sealer_of(conn)
        in_tx.prefetch_current([*children, member_key("c-new")])
        assert len(asked) == 1
        values = {c: in_tx.seal(deliveries.c.payload, f"d-{c}", c, '{"kind":"share"}') for c in children[1:]}
        assert len(asked) == 1  # every live key came with the prefetch
        renewed = in_tx.seal(deliveries.c.payload, "d-0", children[0], '{"kind":"share"}')
        first = in_tx.seal(deliveries.c.payload, "d-new", member_key("c-new"), '{"kind":"share"}')
    assert all(seal.open(deliveries.c.payload, f"d-{c}", v) == '{"kind":"share"}' for c, v in values.items())
    assert store.vault.current(children[0]).version == made[children[0]] + 1
    assert seal.open(deliveries.c.payload, "d-0", renewed) == seal.open(deliveries.c.payload, "d-new", first)


def test_a_member_key_is_made_inside_a_write_transaction_without_waiting_for_it(store: Store) -> None:
    """The sharing step seals a child's first payload in its own transaction (SQLite has one writer)."""
    sealer(store)  # the store's vault is the one sealer_of finds for this engine
    with store.engine.begin() as conn:
        conn.execute(sa.text("select 1"))
        seal = sealer_of(conn)
        value = seal.seal(deliveries.c.payload, "d-1", member_key("c-9"), '{"kind":"share"}')
    assert sealer(store).open(deliveries.c.payload, "d-1", value) == '{"kind":"share"}'


def test_the_migration_seals_what_an_older_hub_kept_in_clear(empty_sqlite_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    master = secrets.token_hex(32)
    monkeypatch.setenv("HUB_PAYLOAD_MASTER_KEY", master)
    engine = make_engine(empty_sqlite_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0023")
    now = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into timeline_entries (event_id, subject, record_type, ce_type, sector, category, status, "
            "source_system, source_version, occurred_at, received_at, summary, record, late) values "
            "('e-1', :s, 'PlanPublished', 't', 'social_care', 'general', 'active', 'x', 1, :t, :t, :title, :rec, 0)"),
            {"s": SUBJECT, "t": now, "title": TITLE, "rec": json.dumps({"title": TITLE})})
        conn.execute(sa.text("insert into households (household_id, created_at, created_by) values ('h-1', :t, 'x')"),
                     {"t": now})
        conn.execute(sa.text(
            "insert into household_members (member_id, household_id, kind, relationship, parental_responsibility, "
            "date_of_birth, created_at) values ('c-1', 'h-1', 'child', 'child', 0, '2024-05-06', :t)"), {"t": now})
    migrate(engine)
    with engine.connect() as conn:
        entry = conn.execute(sa.select(T.summary, T.record)).one()
        born = conn.execute(sa.select(M.date_of_birth)).scalar_one()
    assert "Cerys" not in entry.summary + entry.record and "2024" not in born
    seal = Sealer(SqlKeyVault(Store(engine), MasterKeyring.from_text(master)))
    assert seal.open(T.summary, "e-1", entry.summary) == TITLE
    assert json.loads(seal.open(T.record, "e-1", entry.record)) == {"title": TITLE}
    assert seal.date(M.date_of_birth, "c-1", born) == date(2024, 5, 6)
    with engine.begin() as conn:  # and back: a downgrade opens them again
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0023")
    with engine.connect() as conn:
        assert conn.execute(sa.text("select summary from timeline_entries")).scalar_one() == TITLE
        assert str(conn.execute(sa.text("select date_of_birth from household_members")).scalar_one()) == "2024-05-06"
    engine.dispose()


@pytest.mark.parametrize("second", ["in a write transaction", "through the process's key vault"])
def test_a_members_first_key_made_by_two_at_once_is_the_one_both_seal_with(pg_url: str, second: str) -> None:
    """Two transactions need a member's first data key at the same moment: the second waits for the first's
    insert and must then seal with the key that was kept, not with the one it made and lost (PostgreSQL,
    where the two really wait on each other)."""
    engine = make_engine(pg_url)
    migrate(engine)
    store = Store(engine, SqlKeyVault(Store(engine), MasterKeyring.from_text(secrets.token_hex(32))))
    subject = member_key("c-race")
    sealed: dict[str, str] = {}
    first = engine.connect()
    held = first.begin()
    sealed["r-1"] = sealer_of(first).seal(T.summary, "r-1", subject, TITLE)  # makes the key; not committed yet

    def later() -> None:
        if second == "in a write transaction":
            with engine.begin() as conn:
                sealed["r-2"] = sealer_of(conn).seal(T.summary, "r-2", subject, TITLE)
        else:
            sealed["r-2"] = sealer(store).seal(T.summary, "r-2", subject, TITLE)

    thread = threading.Thread(target=later)
    thread.start()
    try:
        def waiting() -> bool:
            with engine.connect() as conn:
                return bool(conn.execute(sa.text(
                    "select count(*) from pg_stat_activity where datname = current_database() "
                    "and wait_event_type = 'Lock' and query like 'INSERT INTO subject_keys%'")).scalar_one())
        deadline = time.monotonic() + 30
        while not waiting():
            assert time.monotonic() < deadline, "the second never waited for the first's key"
            time.sleep(0.05)
        held.commit()
    finally:
        first.close()
        thread.join(30)
    seal = sealer(store)
    assert [seal.open(T.summary, r, sealed[r]) for r in ("r-1", "r-2")] == [TITLE, TITLE]
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from subject_keys where subject = :s"),
                            {"s": subject}).scalar_one() == 1
    engine.dispose()
