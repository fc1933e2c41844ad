"""The CloudEvents headers: one builder for a single event and for a batch, with pinned bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hub.wire import envelope

RECEIVED = datetime(2026, 10, 1, 9, 0, 5, 123456, tzinfo=UTC)
EVENTS = [
    dict(event_id="3f2b1c9d-4a1b-5c3d-8e7f-a12345678901", version=3, source_system="abuhb-pas",
         ce_type="uk.familyhub.appointment.booked", occurred_at=datetime(2026, 9, 30, 8, 15, tzinfo=UTC),
         subject="s-abc"),
    dict(event_id="0b5e9f3a-1c2d-5e4f-9a8b-7c6d5e4f3a2b", version=1, source_system="sys-é",
         ce_type="uk.familyhub.school.attendance", occurred_at=datetime(2026, 9, 1, 10, 0, 0, 999999,
                                                                          tzinfo=timezone(timedelta(hours=1))),
         subject="s-def"),
    dict(event_id="3f2b1c9d-4a1b-5c3d-8e7f-a12345678901", version=4, source_system="abuhb-pas",
         ce_type="uk.familyhub.appointment.booked", occurred_at=datetime(2026, 9, 30, 8, 15, tzinfo=UTC),
         subject="s-abc"),
]


def test_single_event_headers_are_byte_for_byte_the_cloudevents_ones() -> None:
    assert envelope.headers(**EVENTS[0], received_at=RECEIVED) == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"3f2b1c9d-4a1b-5c3d-8e7f-a12345678901.3"),
        ("ce_source", b"urn:familyhub:source:abuhb-pas"),
        ("ce_type", b"uk.familyhub.appointment.booked"),
        ("ce_time", b"2026-09-30T08:15:00.000Z"),
        ("ce_subject", b"s-abc"),
        ("content-type", b"application/avro"),
        ("ce_hubeventid", b"3f2b1c9d-4a1b-5c3d-8e7f-a12345678901"),
        ("ce_hubversion", b"3"),
        ("ce_hubreceived", b"2026-10-01T09:00:05.123Z"),
    ]


def test_a_batch_builds_the_same_headers_as_single_events() -> None:
    builder = envelope.HeaderBuilder(RECEIVED)
    batch = [builder.build(e["event_id"], e["version"], e["source_system"], e["ce_type"],
                           e["occurred_at"], e["subject"]) for e in EVENTS]
    single = [envelope.headers(**e, received_at=RECEIVED) for e in EVENTS]
    assert batch == single
    assert envelope.as_dict(batch[1])["ce_time"] == "2026-09-01T10:00:00.999+01:00"
    assert envelope.as_dict(batch[1])["ce_source"] == "urn:familyhub:source:sys-é"


def test_deadletter_headers_follow_the_original_ones() -> None:
    original = [("ce_id", b"x.1")]
    assert envelope.deadletter_headers(original, "hub.ingest.health", 2, 17, ValueError("bad " + "x" * 600)) == [
        ("ce_id", b"x.1"),
        ("__connect.errors.topic", b"hub.ingest.health"),
        ("__connect.errors.partition", b"2"),
        ("__connect.errors.offset", b"17"),
        ("__connect.errors.exception.class.name", b"ValueError"),
        ("__connect.errors.exception.message", ("bad " + "x" * 496).encode()),
    ]
