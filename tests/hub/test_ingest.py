"""The acceptance contract against a real broker and real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

from hub.core.errors import BrokerError, CorruptRecordError, ValidationError
from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.demo.identifiers import nhs_number
from hub.ingest.relay import relay_unpublished
from hub.ingest.service import EVENT_NAMESPACE, event_id_for
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics, message_counts
from hub.wire import envelope
from hub.wire.sealing import SEALED_CONTENT_TYPE, is_sealed
from hub.wire.serde import SingleObjectSerde

pytestmark = pytest.mark.broker
SLT = {"agency_id": "7A6", "agency_name": "ABUHB", "sector": "health", "service_code": "SLT",
       "service_name": "Speech and language therapy"}
T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def appointment(source_id: str, version: int = 1, days: int = 0, **body: Any) -> InboundEvent:
    return InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb-pas",
                        source_id=source_id, source_version=version, occurred_at=T0,
                        subject=SubjectRef("nhs-number", nhs_number(42)),
                        body={"service": SLT, "start": T0 + timedelta(days=14 + days), **body})


async def consume_all(bootstrap: str, topic: str, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[Any] = []
        while len(out) < n:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                break
            for msgs in batch.values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


@pytest.fixture
async def services(db_url: str, tmp_path: Any) -> Any:
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, database_url=db_url,
                        data_dir=tmp_path / "data", pseudonym_key="k" * 32)
    await ensure_topics(settings)
    svc = Services.build(settings)
    await svc.start()
    yield svc
    await svc.stop()
    svc.store.engine.dispose()
    broker.stop()


async def test_accepted_event_is_avro_on_its_topic_with_pseudonymous_key(services: Services) -> None:
    [acc] = await services.ingest.accept([appointment("appt-1")])
    assert acc.status == "accepted" and acc.topic == "hub.ingest.health"
    [msg] = await consume_all(services.settings.kafka_bootstrap, "hub.ingest.health", 1)
    subject = services.pseudonymise("nhs-number", nhs_number(42))
    assert msg.key == subject.encode()
    headers = dict(msg.headers)
    assert headers["ce_id"] == f"{acc.event_id}.1".encode()
    assert headers["ce_type"] == b"uk.familyhub.appointment.booked"
    assert headers["ce_subject"] == subject.encode()
    assert headers["ce_source"] == b"urn:familyhub:source:abuhb-pas"
    assert headers["content-type"] == SEALED_CONTENT_TYPE.encode()  # what the value is: a sealed frame
    assert is_sealed(msg.value)
    with pytest.raises(CorruptRecordError):  # sealed with the subject's data key, not plain Avro
        SingleObjectSerde(services.catalogue).decode(msg.value)
    record = services.serde.decode(msg.value).record
    assert record["meta"]["event_id"] == acc.event_id and record["meta"]["subject"] == subject
    assert record["start"] == T0 + timedelta(days=14)
    raw = msg.value + msg.key + b"".join(v for _, v in msg.headers)
    assert nhs_number(42).encode() not in raw


async def test_resend_is_one_event_and_newer_version_is_an_update(services: Services) -> None:
    first = await services.ingest.accept([appointment("appt-2")])
    again = await services.ingest.accept([appointment("appt-2"), appointment("appt-2")])
    assert [a.status for a in again] == ["duplicate", "duplicate"]
    assert {a.event_id for a in again} == {first[0].event_id}
    moved = await services.ingest.accept([appointment("appt-2", version=2, days=7)])
    assert moved[0].status == "accepted" and moved[0].event_id == first[0].event_id
    counts = await message_counts(services.settings)
    assert counts["hub.ingest.health"] == 2
    assert services.store.log_count() == 2


async def test_same_event_twice_in_one_batch_is_recorded_once(services: Services) -> None:
    result = await services.ingest.accept([appointment("appt-3"), appointment("appt-3")])
    assert [a.status for a in result] == ["accepted", "duplicate"]
    assert services.store.log_count() == 1


async def test_invalid_events_are_refused_whole_and_nothing_is_written(services: Services) -> None:
    bad_enum = appointment("appt-4", contact_type="maybe")
    naive = InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb-pas",
                         source_id="appt-5", occurred_at=datetime(2026, 1, 1), subject=SubjectRef("nhs-number", "x"),
                         body={"service": SLT, "start": T0})
    unknown = InboundEvent(record_type="Horoscope", sector="health", source_system="x", source_id="1",
                           occurred_at=T0, subject=SubjectRef("nhs-number", "x"))
    with pytest.raises(ValidationError) as err:
        await services.ingest.accept([appointment("ok-1"), bad_enum, naive, unknown])
    locations = [p.location for p in err.value.problems]
    assert locations == ["[1]", "[2]", "[3]"]
    assert "AppointmentBooked" in str(err.value.problems[0])
    assert "time zone" in str(err.value.problems[1])
    assert "Horoscope" in str(err.value.problems[2])
    assert services.store.log_count() == 0
    assert (await message_counts(services.settings))["hub.ingest.health"] == 0


async def test_unpublished_rows_are_relayed_in_order(services: Services) -> None:
    prepared, problems = services.ingest.prepare([appointment(f"appt-r{i}") for i in range(5)])
    assert not problems
    services.store.append([p.row for p in prepared if p])  # accepted, broker not yet told
    assert services.store.log_count(unpublished_only=True) == 5
    assert await relay_unpublished(services.store, services.publisher) == 5
    assert services.store.log_count(unpublished_only=True) == 0
    msgs = await consume_all(services.settings.kafka_bootstrap, "hub.ingest.health", 5)
    assert [dict(m.headers)["ce_hubeventid"] for m in msgs] == [p.row["event_id"].encode() for p in prepared if p]
    # a resend of a relayed event is a duplicate, not a second copy
    assert (await services.ingest.accept([appointment("appt-r0")]))[0].status == "duplicate"


async def test_two_concurrent_requests_with_the_same_event_log_and_publish_it_once(services: Services) -> None:
    batch = [appointment("appt-c1"), appointment("appt-c2")]
    first, second = await asyncio.gather(services.ingest.accept(batch), services.ingest.accept(list(batch)))
    statuses = sorted(a.status for a in [*first, *second])
    assert statuses == ["accepted", "accepted", "duplicate", "duplicate"]
    assert [a.event_id for a in first] == [a.event_id for a in second]
    assert services.store.log_count() == 2 and services.store.log_count(unpublished_only=True) == 0
    assert (await message_counts(services.settings))["hub.ingest.health"] == 2
    # a third copy, and a newer version alongside, after both answered
    third = await services.ingest.accept([appointment("appt-c1"), appointment("appt-c1", version=2, days=3)])
    assert [a.status for a in third] == ["duplicate", "accepted"]
    assert (await message_counts(services.settings))["hub.ingest.health"] == 3


async def test_concurrent_services_on_one_database_log_the_event_once(services: Services, db_url: str) -> None:
    """Two hub processes (two stores on one database) accepting the same event at the same time."""
    other = Services.build(services.settings)
    await other.start()
    try:
        events = [appointment(f"appt-p{i}") for i in range(50)]
        a, b = await asyncio.gather(services.ingest.accept(events), other.ingest.accept(list(events)))
        assert [x.event_id for x in a] == [x.event_id for x in b]
        assert all({x.status, y.status} == {"accepted", "duplicate"} for x, y in zip(a, b, strict=True))
        assert services.store.log_count() == 50 and services.store.log_count(unpublished_only=True) == 0
    finally:
        await other.stop()
        other.store.engine.dispose()


async def test_broker_failure_keeps_the_row_and_a_resend_or_the_relay_publishes_it(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broker_down(records: Any) -> None:
        raise BrokerError("the broker did not acknowledge")

    with monkeypatch.context() as m:
        m.setattr(services.publisher, "publish", broker_down)
        with pytest.raises(BrokerError):
            await services.ingest.accept([appointment("appt-f1"), appointment("appt-f2")])
    assert services.store.log_count(unpublished_only=True) == 2
    assert (await message_counts(services.settings))["hub.ingest.health"] == 0
    # the sender retries one of them: it is a duplicate, published before the answer
    [again] = await services.ingest.accept([appointment("appt-f1")])
    assert again.status == "duplicate"
    assert services.store.log_count(unpublished_only=True) == 1
    assert await relay_unpublished(services.store, services.publisher) == 1
    assert services.store.log_count(unpublished_only=True) == 0
    assert (await message_counts(services.settings))["hub.ingest.health"] == 2
    assert services.store.log_count() == 2


async def test_append_skipping_existing_rows(services: Services) -> None:
    prepared, _ = services.ingest.prepare([appointment("appt-s1"), appointment("appt-s2")])
    rows = [p.row for p in prepared if p]
    seqs = services.store.append(rows[:1])
    again = services.store.append(rows, skip_existing=True)
    assert again[0] == 0 and again[1] > seqs[0]
    assert services.store.existing_versions([p.source_key for p in prepared if p] + [("abuhb-pas", "x", 1)]) == {
        p.source_key for p in prepared if p}
    assert [r.seq for r in services.store.log_by_source([p.source_key for p in prepared if p])] == [seqs[0], again[1]]
    services.store.mark_published([seqs[0], again[1]])
    assert services.store.log_count(unpublished_only=True) == 0


async def test_prepared_headers_and_ids_are_the_envelope_ones(services: Services) -> None:
    event = appointment("appt-h1", version=3)
    [prep], _ = services.ingest.prepare([event])
    assert prep is not None
    row = prep.row
    assert row["event_id"] == str(uuid.uuid5(EVENT_NAMESPACE, "abuhb-pas\x1fappt-h1"))
    assert event_id_for("sys-é", "id/1") == str(uuid.uuid5(EVENT_NAMESPACE, "sys-é\x1fid/1"))
    assert row["headers"] == envelope.headers(
        event_id=row["event_id"], version=3, source_system="abuhb-pas", ce_type="uk.familyhub.appointment.booked",
        occurred_at=T0, subject=row["key"], received_at=row["received_at"], content_type=SEALED_CONTENT_TYPE,
        dataschema="urn:familyhub:schema:uk.familyhub.event.AppointmentBooked:v1")


async def test_a_prepared_batch_has_the_headers_of_each_event_alone(services: Services) -> None:
    events = [appointment("appt-b1", version=2), appointment("appt-b2"), appointment("appt-b1", version=3)]
    prepared, problems = services.ingest.prepare(events)
    assert not problems
    for event, prep in zip(events, prepared, strict=True):
        assert prep is not None
        row = prep.row
        assert row["headers"] == envelope.headers(
            event_id=row["event_id"], version=event.source_version, source_system="abuhb-pas",
            ce_type="uk.familyhub.appointment.booked", occurred_at=T0, subject=row["key"],
            received_at=row["received_at"], content_type=SEALED_CONTENT_TYPE,
            dataschema="urn:familyhub:schema:uk.familyhub.event.AppointmentBooked:v1")


async def test_published_headers_are_a_binary_mode_kafka_cloudevent(services: Services) -> None:
    """The CloudEvents SDK reads the record as published: every attribute, the truthful content type, the schema."""
    [acc] = await services.ingest.accept([appointment("appt-ce", version=2)])
    [msg] = await consume_all(services.settings.kafka_bootstrap, "hub.ingest.health", 1)
    event = from_binary_event(KafkaMessage(headers=dict(msg.headers), key=msg.key, value=msg.value))
    assert event.get_specversion() == "1.0"
    assert event.get_id() == f"{acc.event_id}.2"
    assert event.get_source() == "urn:familyhub:source:abuhb-pas"
    assert event.get_type() == "uk.familyhub.appointment.booked"
    assert event.get_subject() == services.pseudonymise("nhs-number", nhs_number(42))
    assert event.get_time() == T0
    assert event.get_datacontenttype() == "application/vnd.familyhub.sealed-avro; frame=1"
    schema = event.get_dataschema()
    assert schema == "urn:familyhub:schema:uk.familyhub.event.AppointmentBooked:v1"
    full, version = schema.removeprefix("urn:familyhub:schema:").split(":")
    released = services.catalogue.dir / "released" / full / f"{version}.avsc"
    assert services.catalogue.by_fingerprint(services.catalogue.writer("AppointmentBooked").fingerprint).version == 1
    assert released.is_file()
    assert (event.get_extension("hubeventid"), event.get_extension("hubversion")) == (acc.event_id, "2")
    assert event.get_data() == msg.value  # opaque bytes to anyone without the subject's key
