"""Topics as code: one catalogue of every topic the hub uses, created idempotently at start.

Keys are always pseudonymous (a subject pseudonym or a household id); values are Avro records in
single-object encoding (or the Confluent wire format) with the CloudEvents envelope in ``ce_*``
headers. Topics that are joined share the key and the partition count (co-partitioned).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from hub.core import records
from hub.core.errors import BrokerError
from hub.core.events import Sector
from hub.core.settings import Settings

FOREVER = -1
#: the stream workers' consumer group (its lag is the API's ``hub_consumer_lag``)
GROUP_ID = "familyhub-worker"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    values: str
    description: str
    retention_ms: int = FOREVER
    compacted: bool = False

    def configs(self, settings: Settings) -> dict[str, str]:
        cfg = {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": "compact" if self.compacted else "delete",
        }
        if settings.topic_min_insync_replicas > 1:
            cfg["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
        return cfg


INGEST_HEALTH = TopicSpec("hub.ingest.health", "subject pseudonym", "health records (uk.familyhub.event.*)",
                          "Accepted events from health connectors (FHIR R4 / UK Core).")
INGEST_SOCIAL_CARE = TopicSpec("hub.ingest.social-care", "subject pseudonym", "social-care records",
                               "Accepted events from local-authority connectors.")
INGEST_EDUCATION = TopicSpec("hub.ingest.education", "subject pseudonym", "education records",
                             "Accepted events from education connectors (SEN2, school MIS).")
INGEST_IDENTITY = TopicSpec("hub.ingest.identity", "subject pseudonym", "IdentityLinked",
                            "Links and unlinks between agency subjects and a child in a household.")
INGEST_CONSENT = TopicSpec("hub.ingest.consent", "subject pseudonym", "ConsentGranted, ConsentWithdrawn",
                           "Consent directives from families and young people.")
DEADLETTER = TopicSpec("hub.deadletter", "original key", "original bytes",
                       "Records that failed after acceptance, with __connect.errors.* headers.")
AUDIT_CHECKPOINTS = TopicSpec("hub.audit.checkpoints", "signing key id", "signed checkpoint (JSON line)",
                              "Signed checkpoints of the audit chain's head (hub.governance.checkpoints); "
                              "kept forever, never compacted.")

CATALOGUE: tuple[TopicSpec, ...] = (
    INGEST_HEALTH, INGEST_SOCIAL_CARE, INGEST_EDUCATION, INGEST_IDENTITY, INGEST_CONSENT, DEADLETTER,
    AUDIT_CHECKPOINTS,
)
INGEST_TOPICS: tuple[TopicSpec, ...] = CATALOGUE[:5]

_BY_SECTOR: dict[str, TopicSpec] = {
    "health": INGEST_HEALTH, "social_care": INGEST_SOCIAL_CARE, "education": INGEST_EDUCATION,
}
_BY_TOPIC: dict[str, TopicSpec] = {
    "health": INGEST_HEALTH, "social-care": INGEST_SOCIAL_CARE, "education": INGEST_EDUCATION,
    "identity": INGEST_IDENTITY, "consent": INGEST_CONSENT,
}


def topic_for(record_type: str, sector: Sector) -> TopicSpec:
    """The ingest topic of a record: its schema's ``hub.topic``, or by the sector for ``by-sector`` types."""
    topic = records.get(record_type).topic
    if topic == records.BY_SECTOR:
        return _BY_SECTOR.get(sector, INGEST_HEALTH if sector == "hub" else INGEST_SOCIAL_CARE)
    return _BY_TOPIC[topic]


def client_args(settings: Settings, bootstrap: str | None = None) -> dict[str, object]:
    return {"bootstrap_servers": bootstrap or settings.kafka_bootstrap, **settings.kafka_client_options()}


async def ensure_topics(settings: Settings, bootstrap: str | None = None) -> list[str]:
    """Create every catalogue topic that does not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(**client_args(settings, bootstrap), request_timeout_ms=10000)  # type: ignore[arg-type]
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in CATALOGUE if t.name not in existing]
        created = []
        for spec in missing:
            try:
                await admin.create_topics([NewTopic(
                    spec.name, settings.topic_partitions, settings.topic_replication_factor,
                    topic_configs=spec.configs(settings),
                )])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        return created
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics on {bootstrap or settings.kafka_bootstrap}: {exc}") from exc
    finally:
        await admin.close()


async def end_offsets(consumer: AIOKafkaConsumer, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
    """End offsets, read from the log itself.

    The embedded tansu broker answers ListOffsets(latest) with the base offset of the last record
    batch + 1, whatever the batch holds; so read the last batch and take its last offset + 1. On
    Apache Kafka this gives the same answer as ``end_offsets``.
    """
    reported = await consumer.end_offsets(parts)
    begin = await consumer.beginning_offsets(parts)
    probe = [tp for tp in parts if reported[tp] > begin[tp]]
    out = dict(reported)
    if probe:
        consumer.assign(probe)
        for tp in probe:
            consumer.seek(tp, reported[tp] - 1)
        pending = set(probe)
        for _ in range(20):
            if not pending:
                break
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, msgs in batch.items():
                if msgs:
                    out[tp] = max(out[tp], msgs[-1].offset + 1)
                    if consumer.highwater(tp) is not None and msgs[-1].offset + 1 >= (consumer.highwater(tp) or 0):
                        pending.discard(tp)
            if not batch:
                break
        consumer.unsubscribe()
    return out


async def _partitions(consumer: AIOKafkaConsumer, specs: tuple[TopicSpec, ...]) -> dict[str, list[TopicPartition]]:
    """Partitions of each existing topic, read before any assignment narrows the consumer's metadata."""
    existing = await consumer.topics()
    return {spec.name: [TopicPartition(spec.name, p) for p in sorted(consumer.partitions_for_topic(spec.name) or ())]
            for spec in specs if spec.name in existing}


async def message_counts(settings: Settings, bootstrap: str | None = None) -> dict[str, int | None]:
    """Messages currently held per catalogue topic (end minus beginning offsets); None if absent."""
    consumer = AIOKafkaConsumer(**client_args(settings, bootstrap), enable_auto_commit=False)  # type: ignore[arg-type]
    try:
        await consumer.start()
        parts = await _partitions(consumer, CATALOGUE)
        every = [tp for tps in parts.values() for tp in tps]
        begin = await consumer.beginning_offsets(every) if every else {}
        end = await end_offsets(consumer, every) if every else {}
        return {spec.name: (sum(end[tp] - begin[tp] for tp in parts[spec.name]) if spec.name in parts else None)
                for spec in CATALOGUE}
    except KafkaError as exc:
        raise BrokerError(f"cannot read topic offsets from {bootstrap or settings.kafka_bootstrap}: {exc}") from exc
    finally:
        await consumer.stop()


async def consumer_lag(settings: Settings, group_id: str, bootstrap: str | None = None) -> dict[str, int]:
    """Per topic: messages the group has not committed yet (end offset minus committed offset).

    The committed offsets are read with OffsetFetch through a consumer bound to the group (it never
    subscribes, so it does not join it): the admin client's ListConsumerGroupOffsets answer from the
    embedded broker does not decode in aiokafka.
    """
    group = AIOKafkaConsumer(**client_args(settings, bootstrap), group_id=group_id,  # type: ignore[arg-type]
                             enable_auto_commit=False)
    consumer = AIOKafkaConsumer(**client_args(settings, bootstrap), enable_auto_commit=False)  # type: ignore[arg-type]
    try:
        await group.start()
        await consumer.start()
        parts = await _partitions(consumer, INGEST_TOPICS)
        every = [tp for tps in parts.values() for tp in tps]
        end = await end_offsets(consumer, every) if every else {}
        committed = {tp: await group.committed(tp) for tp in every}
        return {topic: sum(max(0, end[tp] - (committed[tp] or 0)) for tp in tps) for topic, tps in parts.items()}
    except KafkaError as exc:
        raise BrokerError(f"cannot read consumer lag: {exc}") from exc
    finally:
        await consumer.stop()
        await group.stop()
