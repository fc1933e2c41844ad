"""The raw floor of this machine: what Kafka (aiokafka + the embedded tansu broker) and fastavro can do
before any hub logic runs. Later bench figures are quoted as "x of floor" against these.

Run: /work/venv/bin/python bench/raw_floor.py [--messages N] [--json PATH]

One run measures, against an embedded broker it starts (and always stops, Ctrl-C included):

a. produce       aiokafka producer, acks=all, linger 5 ms, no idempotence (tansu memory storage),
                 ``send()`` a batch of ``--batch`` records then ``gather`` the acks; 300-byte values,
                 28-byte keys spread over ``--partitions`` partitions. Also the p50/p95/p99 of a
                 batch's send-to-all-acked time.
b. consume       aiokafka consumer in a fresh consumer group, ``getmany`` from the earliest offset
                 over everything (a) wrote; rate from the first record to the last, plus the time
                 from ``start()`` to the first record (group join + first fetch).
c. avro encode   a realistic AppointmentBooked record with its Meta (~350 B): bare fastavro
                 ``schemaless_writer`` with the parsed schema vs the hub's ``SingleObjectSerde.encode``.
d. avro decode   the same bytes back: bare ``schemaless_reader`` vs ``SingleObjectSerde.decode``
                 (fingerprint lookup + schema resolution to the current version + checks).
f. sealing       the hub's SealingSerde (per-subject AES-256-GCM data keys, cached) over the serde: seal +
                 encode and open + decode, against (c) and (d).
e. hub produce   (a) with hub-shaped records: single-object encoded AppointmentBooked values (encoded
                 beforehand) and pseudonymous keys, first without and then with the ten CloudEvents
                 ``ce_*`` headers of ``hub.envelope.headers``; the ratio is the header cost.

The broker and this client share the machine's cores, so the Kafka figures are a floor for a
co-located deployment, not for a real cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, before site-packages

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from bench.harness import Measurement, Report, add_common_args, percentiles, time_for
from hub.core.settings import load_settings
from hub.kafka.broker import EmbeddedBroker
from hub.wire import envelope
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import SingleObjectSerde

RECORD_TYPE = "AppointmentBooked"
VALUE_BYTES = 300
POOL = 1000  # distinct records / keys cycled through
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ records

def subject(i: int) -> str:
    """Shaped like a hub pseudonym: 's-' + 26 base32 characters."""
    return "s-" + uuid.UUID(int=i * 2654435761 + 1).hex[:26]


def appointment(i: int, rng: random.Random) -> dict[str, Any]:
    """An AppointmentBooked as a health connector would produce it (timestamps as aware datetimes)."""
    occurred = T0 + timedelta(minutes=rng.randrange(500_000))
    start = occurred + timedelta(days=rng.randrange(1, 120), hours=rng.randrange(8, 17))
    return {
        "meta": {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "source_system": "abuhb-pas",
            "source_id": f"APPT-{1_000_000 + i}",
            "source_version": rng.choice([1, 1, 1, 2]),
            "occurred_at": occurred,
            "received_at": occurred + timedelta(seconds=rng.randrange(1, 600)),
            "subject": subject(i),
            "category": "general",
            "status": "active",
            "mapping": "fhir-appointment@3",
        },
        "service": {
            "agency_id": "7A6",
            "agency_name": "Aneurin Bevan University Health Board",
            "sector": "health",
            "service_code": rng.choice(["420", "652", "291"]),
            "service_name": rng.choice(
                ["Paediatrics", "Speech and Language Therapy", "Community Paediatrics"]),
        },
        "professional": {"id": f"C{rng.randrange(1_000_000, 9_999_999)}", "role": "consultant",
                         "display_name": "Dr A. Example"},
        "start": start,
        "end": start + timedelta(minutes=rng.choice([20, 30, 45, 60])),
        "location": "Royal Gwent Hospital, Children's Outpatients",
        "contact_type": rng.choice(["new", "follow_up"]),
        "joint": rng.random() < 0.1,
        "purpose": "Developmental review following referral from health visitor.",
    }


def hub_messages(serde: SingleObjectSerde, catalogue: SchemaCatalogue, records: Sequence[dict[str, Any]]
                 ) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """(key, value, headers) as hub.ingest prepares them."""
    ce_type = catalogue.writer(RECORD_TYPE).ce_type
    out = []
    for rec in records:
        m = rec["meta"]
        headers = envelope.headers(event_id=m["event_id"], version=m["source_version"],
                                   source_system=m["source_system"], ce_type=ce_type,
                                   occurred_at=m["occurred_at"], subject=m["subject"],
                                   received_at=m["received_at"])
        out.append((m["subject"].encode(), serde.encode(RECORD_TYPE, rec), headers))
    return out


# ------------------------------------------------------------------------------------------ kafka

async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes, Any]], n: int,
                  batch: int, max_seconds: float, warmup: int) -> Measurement:
    """Send n messages (cycling the pool) in batches of send() + gather; samples = batch latencies."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                linger_ms=5, max_batch_size=256 * 1024, request_timeout_ms=30000)
    await producer.start()
    try:
        send = producer.send
        pool = len(messages)

        async def one_batch(first: int, size: int) -> None:
            futures = []
            for i in range(first, first + size):
                key, value, headers = messages[i % pool]
                futures.append(await send(topic, value, key=key, headers=headers))
            await asyncio.gather(*futures)

        done = 0
        while done < warmup:  # connections, metadata, partition leaders, first batches
            await one_batch(done, min(batch, warmup - done))
            done += min(batch, warmup - done)
        samples: list[float] = []
        clock = time.perf_counter
        start = clock()
        sent = 0
        while sent < n:
            size = min(batch, n - sent)
            t = clock()
            await one_batch(sent, size)
            samples.append(clock() - t)
            sent += size
            if clock() - start > max_seconds:
                print(f"  (stopped {topic} after {sent:,} messages: over {max_seconds:.0f} s)", flush=True)
                break
        return Measurement(sent, clock() - start, tuple(samples))
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, expected: int,
                  max_seconds: float) -> tuple[Measurement, float, int]:
    """Read `expected` records in a new group; returns (first→last record, join seconds, value bytes)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                group_id=f"bench-floor-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=True,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    clock = time.perf_counter
    t_start = clock()
    await consumer.start()
    try:
        got = 0
        nbytes = 0
        first = last = None
        first_count = 0
        while got < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            now = clock()
            count = 0
            for records in batches.values():
                count += len(records)
                for r in records:
                    nbytes += len(r.value)
            if count:
                if first is None:
                    first, first_count = now, count
                got += count
                last = now
            if now - t_start > max_seconds:
                print(f"  (stopped consuming after {got:,} of {expected:,}: over {max_seconds:.0f} s)",
                      flush=True)
                break
        if first is None or last is None:
            return Measurement(0, 0.0), clock() - t_start, 0
        # the records of the first fetch arrive at `first`, so the steady rate leaves them out
        return Measurement(got - first_count, last - first), first - t_start, nbytes
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------------------ avro

def avro_figures(report: Report, catalogue: SchemaCatalogue, records: list[dict[str, Any]],
                 seconds: float) -> None:
    """Encode/decode rates: fastavro floor, fastavro with the catalogue's parsed schema, the hub serde.

    The floor uses ``parse_schema(schema)`` with fastavro's defaults. The catalogue parses with
    ``_write_hint=False``, which leaves out the marker fastavro looks for to skip parsing again, so
    the middle row shows how much of the serde overhead is that re-parse rather than the framing.
    """
    serde = SingleObjectSerde(catalogue)
    version = catalogue.writer(RECORD_TYPE)
    floor_schema = parse_schema(version.schema)
    hub_schema = version.parsed

    def encoder(schema: Any) -> Any:
        def encode(rec: dict[str, Any]) -> bytes:
            buf = io.BytesIO()
            schemaless_writer(buf, schema, rec)
            return buf.getvalue()
        return encode

    def decoder(schema: Any) -> Any:
        def decode(body: bytes) -> Any:
            return schemaless_reader(io.BytesIO(body), schema, None)
        return decode

    def hub_encode(rec: dict[str, Any]) -> bytes:
        return serde.encode(RECORD_TYPE, rec)

    bodies = [encoder(floor_schema)(r) for r in records]
    framed = [hub_encode(r) for r in records]
    assert all(f[10:] == b for f, b in zip(framed, bodies, strict=True))
    assert decoder(floor_schema)(bodies[0]) == serde.decode(framed[0]).record
    size = sum(len(b) for b in framed) / len(framed)

    enc = time_for(encoder(floor_schema), records, seconds)
    enc_h = time_for(encoder(hub_schema), records, seconds)
    enc_s = time_for(hub_encode, records, seconds)
    dec = time_for(decoder(floor_schema), bodies, seconds)
    dec_h = time_for(decoder(hub_schema), bodies, seconds)
    dec_s = time_for(serde.decode, framed, seconds)

    def us(m: Measurement) -> str:
        return f"{1e6 / m.rate:.1f} us/rec"

    fe, fd = "c. avro encode (fastavro)", "d. avro decode (fastavro)"
    report.add(fe, enc.rate, "rec/s", note=f"{us(enc)}; body {size - 10:.0f} B; parse_schema(schema)")
    report.add("c. encode, catalogue schema", enc_h.rate, "rec/s", base=fe,
               note=f"{us(enc_h)}; bare fastavro with SchemaVersion.parsed (_write_hint=False)")
    report.add("c. avro encode (hub serde)", enc_s.rate, "rec/s", base=fe,
               note=f"{us(enc_s)}; SingleObjectSerde.encode, {size:.0f} B")
    report.add(fd, dec.rate, "rec/s", note=f"{us(dec)}; schemaless_reader, no resolution")
    report.add("d. decode, catalogue schema", dec_h.rate, "rec/s", base=fd,
               note=f"{us(dec_h)}; bare fastavro with SchemaVersion.parsed")
    report.add("d. avro decode (hub serde)", dec_s.rate, "rec/s", base=fd,
               note=f"{us(dec_s)}; SingleObjectSerde.decode: fingerprint lookup + resolve + checks")
    report.add("serde overhead encode", enc.rate / enc_s.rate, "x",
               note="fastavro floor rate / hub serde rate (time per record, serde / floor)")
    report.add("serde overhead decode", dec.rate / dec_s.rate, "x",
               note="fastavro floor rate / hub serde rate (time per record, serde / floor)")


# ------------------------------------------------------------------------------------------ sealing

def sealing_figures(report: Report, catalogue: SchemaCatalogue, records: list[dict[str, Any]],
                    seconds: float) -> None:
    """Seal + encode and open + decode through the hub's SealingSerde over the SQL key vault.

    The vault is a real one (SQLite in a temporary directory); every subject's key is made and cached
    before timing, so the figures are the steady state: one cache lookup and one AES-256-GCM
    operation per record on top of the serde. One subject per record, 1,000 subjects.
    """
    import tempfile

    from hub.db.keyvault import SqlKeyVault
    from hub.db.store import Store
    from hub.wire.sealing import MasterKeyring, SealingSerde

    serde = SingleObjectSerde(catalogue)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/bench.db")
        sealed = SealingSerde(serde, SqlKeyVault(store, MasterKeyring.from_text(uuid.uuid4().hex * 2)))

        def seal_encode(rec: dict[str, Any]) -> bytes:
            return sealed.encode(RECORD_TYPE, rec)

        framed = [seal_encode(r) for r in records]  # keys made and cached
        plain = [serde.encode(RECORD_TYPE, r) for r in records]
        assert sealed.decode(framed[0]).record == serde.decode(plain[0]).record
        enc = time_for(seal_encode, records, seconds)
        dec = time_for(sealed.decode, framed, seconds)
        store.engine.dispose()
    size = sum(len(f) for f in framed) / len(framed) - sum(len(b) for b in plain) / len(plain)
    report.add("f. seal + encode (sealing serde)", enc.rate, "rec/s", base="c. avro encode (hub serde)",
               note=f"{1e6 / enc.rate:.1f} us/rec; +{size:.0f} B frame; keys cached")
    report.add("f. open + decode (sealing serde)", dec.rate, "rec/s", base="d. avro decode (hub serde)",
               note=f"{1e6 / dec.rate:.1f} us/rec; cache lookup + AES-256-GCM + serde")


# ------------------------------------------------------------------------------------------ main

async def kafka_figures(report: Report, bootstrap: str, args: argparse.Namespace,
                        hub_msgs: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    run = uuid.uuid4().hex[:6]
    t_raw, t_bare, t_hub = f"bench.floor.raw.{run}", f"bench.floor.hubbare.{run}", f"bench.floor.hub.{run}"
    await create_topics(bootstrap, [t_raw, t_bare, t_hub], args.partitions)
    rng = random.Random(7)
    raw = [(subject(i).encode(), rng.randbytes(VALUE_BYTES), None) for i in range(POOL)]
    n, cap, warm = args.messages, args.max_seconds, min(args.batch * 2, args.messages)

    def batch_note(m: Measurement) -> str:
        p = percentiles([s * 1000 for s in m.samples])
        return (f"{m.count:,} in {m.seconds:.2f} s; batch of {args.batch} acked in "
                f"p50 {p['p50']:.1f} / p95 {p['p95']:.1f} / p99 {p['p99']:.1f} ms")

    print(f"a. produce {n:,} x {VALUE_BYTES} B ...", flush=True)
    m = await produce(bootstrap, t_raw, raw, n, args.batch, cap, warm)
    report.add("a. produce 300 B (floor)", m.rate, "msg/s", note=batch_note(m),
               extra={f"batch_ms_{k}": v for k, v in percentiles([s * 1000 for s in m.samples]).items()})
    report.add("a. produce 300 B MB/s", m.rate * VALUE_BYTES / 1e6, "MB/s", note="values only")

    expected = m.count + warm
    print(f"b. consume {expected:,} (consumer group, getmany) ...", flush=True)
    c, join, nbytes = await consume(bootstrap, t_raw, expected, cap)
    report.add("b. consume 300 B (floor)", c.rate, "msg/s", base="a. produce 300 B (floor)",
               note=f"{c.count:,} in {c.seconds:.2f} s after the first fetch; start->first record "
                    f"{join * 1000:.0f} ms", extra={"join_ms": join * 1000, "value_bytes": nbytes})

    size = sum(len(v) for _, v, _ in hub_msgs) / len(hub_msgs)
    hsize = sum(len(k) + len(v) for _, _, hs in hub_msgs for k, v in hs) / len(hub_msgs)
    bare = [(k, v, None) for k, v, _ in hub_msgs]
    print(f"e. produce {n:,} hub records without headers ...", flush=True)
    mb = await produce(bootstrap, t_bare, bare, n, args.batch, cap, warm)
    report.add("e. produce hub, no headers", mb.rate, "msg/s", base="a. produce 300 B (floor)",
               note=f"{size:.0f} B Avro value; " + batch_note(mb))
    print(f"e. produce {n:,} hub records with CloudEvents headers ...", flush=True)
    mh = await produce(bootstrap, t_hub, hub_msgs, n, args.batch, cap, warm)
    report.add("e. produce hub + ce_* headers", mh.rate, "msg/s", base="e. produce hub, no headers",
               note=f"10 headers, {hsize:.0f} B; " + batch_note(mh))
    report.add("e. hub + headers vs floor", mh.rate / m.rate if m.rate else 0, "x",
               note="hub-shaped produce rate / 300 B floor")


def _as_sigint(sig: int, frame: Any) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(sig, frame)
    else:
        raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000,
                        help="messages per Kafka phase (default 100000)")
    parser.add_argument("--batch", type=int, default=1000,
                        help="records per send()+gather batch (default 1000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (hub default 4)")
    parser.add_argument("--max-seconds", type=float, default=25.0,
                        help="stop a Kafka phase early after this long and report what it did (default 25)")
    parser.add_argument("--avro-seconds", type=float, default=2.0,
                        help="timed seconds per Avro figure (default 2)")
    parser.add_argument("--skip-kafka", action="store_true", help="Avro figures only (no broker)")
    add_common_args(parser)
    args = parser.parse_args()

    # Ctrl-C (even when started with SIGINT ignored, e.g. from a background job) and SIGTERM both go
    # to the current SIGINT handler: asyncio.run's (cancels the main task, so the clients' finally
    # blocks run) or Python's (KeyboardInterrupt); either way the broker is stopped below.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _as_sigint)

    report = Report("raw floor: aiokafka + tansu (embedded) + fastavro", argv=["python", *sys.argv])
    print(report.machine_line(), flush=True)
    catalogue = SchemaCatalogue(load_settings().schema_dir)
    rng = random.Random(20261123)
    records = [appointment(i, rng) for i in range(POOL)]
    serde = SingleObjectSerde(catalogue)

    broker: EmbeddedBroker | None = None
    try:
        if not args.skip_kafka:
            t = time.perf_counter()
            broker = EmbeddedBroker().start()
            print(f"broker {broker.bootstrap} (pid {broker.process.pid if broker.process else '?'}) "
                  f"up in {(time.perf_counter() - t) * 1000:.0f} ms", flush=True)
            msgs = hub_messages(serde, catalogue, records)
            asyncio.run(kafka_figures(report, broker.bootstrap, args, msgs))
            broker.stop()  # before the Avro figures, so they have the cores to themselves
            broker = None
        print("c/d. avro encode/decode ...", flush=True)
        avro_figures(report, catalogue, records, args.avro_seconds)
        print("f. seal/open (per-subject keys) ...", flush=True)
        sealing_figures(report, catalogue, records, args.avro_seconds)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the broker", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if broker is not None:
            broker.stop()
    print()
    report.print()
    report.write_json(args.json)


if __name__ == "__main__":
    main()
