"""Sealing records with per-subject data keys (pure: frame, AES-GCM, key wrapping, the serde decorator),
and the SQL key vault against real SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.core.errors import ConfigError, CorruptRecordError, ErasedRecordError, UnsealError
from hub.core.settings import Settings
from hub.db.keyvault import SqlKeyVault, load_keyring
from hub.db.store import Store
from hub.ingest.service import event_id_for
from hub.wire.schemas import SchemaCatalogue
from hub.wire.sealing import (
    SEAL_MAGIC,
    DataKey,
    MasterKeyring,
    SealingSerde,
    data_key,
    is_sealed,
    new_data_key,
    open_frame,
    parse_frame,
    seal,
)
from hub.wire.serde import SingleObjectSerde

ROOT = Path(__file__).resolve().parents[2]
EVENT = event_id_for("sys", "r-1")
SUBJECT = "s-aaaaaaaaaaaaaaaaaaaaaaaaaa"
OTHER = "s-bbbbbbbbbbbbbbbbbbbbbbbbbb"


class MemoryVault:
    """A KeyVault in a dict, for the pure tests."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, int], bytes | None] = {}

    def current(self, subject: str) -> DataKey:
        versions = sorted(v for s, v in self.keys if s == subject)
        if not versions or self.keys[(subject, versions[-1])] is None:
            version = (versions[-1] + 1) if versions else 1
            self.keys[(subject, version)] = new_data_key()
            versions.append(version)
        return self.get(subject, versions[-1])

    def get(self, subject: str, version: int) -> DataKey:
        if (subject, version) not in self.keys:
            raise UnsealError("unknown key")
        raw = self.keys[(subject, version)]
        if raw is None:
            raise ErasedRecordError("shredded")
        return data_key(subject, version, raw)

    def shred(self, subject: str) -> None:
        for k in list(self.keys):
            if k[0] == subject:
                self.keys[k] = None

    def forget(self, subjects: Iterable[str]) -> None:
        pass


def record(subject: str = SUBJECT, event_id: str = EVENT) -> dict[str, object]:
    t = datetime(2026, 9, 1, 9, tzinfo=UTC)
    meta = {"event_id": event_id, "source_system": "sys", "source_id": "r-1", "source_version": 1,
            "occurred_at": t, "received_at": t, "subject": subject, "category": "general", "status": "active",
            "mapping": None}
    return {"meta": meta, "service": {"agency_id": "7A6", "agency_name": None, "sector": "health",
                                      "service_code": None, "service_name": "SLT"}, "start": t}


@pytest.fixture(scope="module")
def plain() -> SingleObjectSerde:
    return SingleObjectSerde(SchemaCatalogue(ROOT / "schemas"))


def test_frame_round_trip_and_layout() -> None:
    key = data_key(SUBJECT, 7, new_data_key())
    sealed = seal(key, EVENT, b"avro bytes")
    assert is_sealed(sealed) and sealed[0] == SEAL_MAGIC and sealed[1] == 1
    frame = parse_frame(sealed)
    assert (frame.key_version, frame.event_id, frame.subject) == (7, EVENT, SUBJECT)
    assert len(frame.nonce) == 12 and len(sealed) == 23 + len(SUBJECT) + 12 + len(b"avro bytes") + 16
    assert open_frame(key, frame) == b"avro bytes"
    assert seal(key, EVENT, b"avro bytes") != sealed  # a fresh nonce every time


@pytest.mark.parametrize("where", ["key version", "event id", "subject", "ciphertext", "tag"])
def test_any_change_to_a_sealed_value_fails_authentication(where: str) -> None:
    key = data_key(SUBJECT, 1, new_data_key())
    sealed = bytearray(seal(key, EVENT, b"payload"))
    offset = {"key version": 5, "event id": 10, "subject": 30, "ciphertext": 23 + len(SUBJECT) + 12,
              "tag": len(sealed) - 1}[where]
    sealed[offset] ^= 0x01
    with pytest.raises(UnsealError):
        open_frame(key, parse_frame(bytes(sealed)))


def test_a_value_moved_to_another_subject_does_not_open(plain: SingleObjectSerde) -> None:
    vault = MemoryVault()
    serde = SealingSerde(plain, vault)
    sealed = serde.encode("AppointmentBooked", record())
    vault.current(OTHER)
    moved = sealed.replace(SUBJECT.encode(), OTHER.encode())  # relabelled as the other subject
    with pytest.raises(UnsealError):
        serde.decode(moved)
    # sealed under the right subject's key but holding another subject's record: refused after opening
    inner = plain.encode("AppointmentBooked", record(subject=OTHER))
    forged = seal(vault.current(SUBJECT), EVENT, inner)
    with pytest.raises(UnsealError, match="another subject"):
        serde.decode(forged)


def test_sealing_serde_round_trip_shredding_and_plaintext(plain: SingleObjectSerde) -> None:
    vault = MemoryVault()
    serde = SealingSerde(plain, vault)
    sealed = serde.encode("AppointmentBooked", record())
    with pytest.raises(CorruptRecordError):  # without the key it is not Avro at all
        plain.decode(sealed)
    assert b"SLT" not in sealed
    assert serde.decode(sealed).record["meta"]["subject"] == SUBJECT
    # bytes written before sealing existed decode as before; garbage is still corrupt (dead-lettered)
    assert serde.decode(plain.encode("AppointmentBooked", record())).record_type == "AppointmentBooked"
    with pytest.raises(CorruptRecordError):
        serde.decode(b"not avro at all")
    with pytest.raises(UnsealError):
        serde.decode(bytes([SEAL_MAGIC, 1, 0]))  # truncated frame
    vault.shred(SUBJECT)
    with pytest.raises(ErasedRecordError):
        serde.decode(sealed)
    again = serde.encode("AppointmentBooked", record())  # new information after an erasure: a new key
    assert parse_frame(again).key_version == 2 and serde.decode(again).record_type == "AppointmentBooked"


def test_master_keyring_wraps_binds_and_rotates() -> None:
    old, new = os.urandom(32).hex(), os.urandom(32).hex()
    ring = MasterKeyring.from_text(old)
    raw = new_data_key()
    kid, wrapped = ring.wrap(SUBJECT, 1, raw)
    assert ring.unwrap(kid, SUBJECT, 1, wrapped) == raw
    with pytest.raises(UnsealError):  # a wrapped key copied to another subject's row
        ring.unwrap(kid, OTHER, 1, wrapped)
    rotated = MasterKeyring.from_text(f"# current first\n{new}\n{old}\n")
    assert rotated.current_id != kid and rotated.unwrap(kid, SUBJECT, 1, wrapped) == raw
    with pytest.raises(ConfigError, match="does not hold"):
        MasterKeyring.from_text(new).unwrap(kid, SUBJECT, 1, wrapped)
    with pytest.raises(ConfigError):
        MasterKeyring.from_text("too short")
    assert MasterKeyring.from_text("a passphrase of at least thirty-two characters").current_id


def test_default_master_key_file_is_created_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    ring = load_keyring(settings)
    path = tmp_path / "keys" / "payload-master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_keyring(settings).current_id == ring.current_id
    assert [p.name for p in path.parent.iterdir()] == ["payload-master.key"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_keyring(Settings(data_dir=tmp_path, payload_master_key_file=tmp_path / "missing"))


def test_sql_vault_creates_caches_shreds_and_rewraps(db_url: str) -> None:
    store = Store.open(db_url)
    old, new = os.urandom(32).hex(), os.urandom(32).hex()
    ring = MasterKeyring.from_text(old)
    vault = SqlKeyVault(store, ring)
    first = vault.current(SUBJECT)
    assert first.version == 1 and vault.current(SUBJECT) is first
    other_process = SqlKeyVault(store, ring)  # another process sees the same key
    sealed = seal(first, EVENT, b"x")
    assert open_frame(other_process.get(SUBJECT, 1), parse_frame(sealed)) == b"x"
    with pytest.raises(UnsealError):
        other_process.get(SUBJECT, 9)
    with store.engine.begin() as conn:
        assert vault.shred(conn, [SUBJECT]) == 1
    with pytest.raises(ErasedRecordError):
        vault.get(SUBJECT, 1)
    assert SqlKeyVault(store, ring).current(SUBJECT).version == 2
    # master key rotation: the new key first and the old one after it, re-wrap, then drop the old key
    rotated = SqlKeyVault(store, MasterKeyring.from_text(f"{new}\n{old}"))
    assert rotated.rewrap() == 1 and rotated.rewrap() == 0
    assert SqlKeyVault(store, MasterKeyring.from_text(new)).get(SUBJECT, 2).version == 2
    with pytest.raises(ConfigError):
        SqlKeyVault(store, MasterKeyring.from_text(old)).get(SUBJECT, 2)
