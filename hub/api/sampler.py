"""Hub-wide metrics, sampled in the background by one API process at a time.

A scrape of ``/metrics`` only formats what is in memory: it opens no Kafka consumer and runs no query.
What describes the hub as a whole rather than one process (consumer lag, dead letters, the outbox,
workers ready, the sharing step's lag, the delivery backlog) is sampled every ``HUB_METRICS_INTERVAL``
seconds by the :class:`MetricsSampler` job, under a lease, so of all the API and connector replicas
exactly one exports these gauges and a ``sum`` over replicas counts each once. The others export
none of them (not zeros, which would pull an ``avg`` down).

The same holder observes, from the durable record, two latency histograms in seconds:
``hub_projection_delay_seconds`` (an event accepted by the hub → on its family's timeline) and
``hub_share_delivery_seconds`` (a report accepted → delivered to the recipient, by channel: webhook,
inbox, family view). The processes that do that work (workers, deliverers) serve probes only, so the
record they leave is read here. Each holder starts at the newest row when it takes the lease, so a
take-over does not observe history twice. Per-process metrics (requests, ingest counts, ingest latency)
stay in each process's registry: Prometheus's ``instance`` label keeps them apart and sums are right.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hub.api.metrics import Metrics
from hub.core.errors import HubError
from hub.core.jobs import Job
from hub.core.logging import get_logger
from hub.db.lease import Lease
from hub.db.schema import deliveries, timeline_changes, timeline_entries
from hub.db.store import Store
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from hub.kafka.topics import GROUP_ID, consumer_lag
from hub.sharing.delivery import backlog as delivery_backlog
from hub.sharing.follower import lag as sharing_lag

log = get_logger(__name__)
LEASE = "metrics-sampler"
#: a worker is ready while its heartbeat is younger than this
READY_HEARTBEAT = timedelta(seconds=10)
#: deliveries are looked for this far behind the newest one seen: a row whose transaction commits late
OVERLAP = timedelta(seconds=60)


@dataclass
class Sample:
    """One background reading of the hub as a whole."""

    taken: float  # time.monotonic() when read
    lag: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    audit_dead_letters: int = 0
    unpublished: int = 0
    oldest_unpublished: float = 0.0
    workers_ready: int = 0
    sharing_lag: int = 0
    deliveries_queued: int = 0
    deliveries_overdue: int = 0


class HubWide(Collector):
    """Exports the last :class:`Sample` while this process holds the sampler's lease; nothing otherwise."""

    def __init__(self) -> None:
        self.sample: Sample | None = None
        self.held = False

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registered without collecting: the families appear with the first sample

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.sample
        if s is None or not self.held:
            return
        lag = GaugeMetricFamily("hub_consumer_lag", "Messages not yet processed by the workers", labels=["topic"])
        for topic, n in sorted(s.lag.items()):
            lag.add_metric([topic], n)
        yield lag
        for name, doc, value in (
            ("hub_dead_letters", "Dead-lettered records not yet replayed", s.dead_letters),
            ("hub_audit_dead_letters", "Audit records the writer could not store (GET /v1/audit/verify)",
             s.audit_dead_letters),
            ("hub_ingest_unpublished", "Accepted events not yet acknowledged by Kafka", s.unpublished),
            ("hub_ingest_oldest_unpublished_seconds", "Age of the oldest accepted event not yet acknowledged "
             "by Kafka", s.oldest_unpublished),
            ("hub_workers_ready", "Workers with a fresh ready heartbeat", s.workers_ready),
            ("hub_sharing_lag", "Timeline changes the sharing step has not decided on yet", s.sharing_lag),
            ("hub_deliveries_queued", "Shares and notices waiting to be sent", s.deliveries_queued),
            ("hub_deliveries_overdue", "Queued deliveries due for over 30 s that no deliverer has taken up",
             s.deliveries_overdue),
            ("hub_metrics_sample_age_seconds", "Seconds since these hub-wide gauges were read",
             time.monotonic() - s.taken),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


def read_sample(store: Store, audit: AuditLog, lag: dict[str, int]) -> Sample:
    """Everything but the consumer lag, from the database: counts, not rows."""
    now = datetime.now(UTC)
    oldest = store.oldest_unpublished()
    workers = store.workers()
    position, newest = sharing_lag(store)
    queued, overdue = delivery_backlog(store)
    return Sample(taken=time.monotonic(), lag=lag, dead_letters=store.dead_letter_count(),
                  audit_dead_letters=audit.dead_letter_count(), unpublished=store.log_count(unpublished_only=True),
                  oldest_unpublished=(now - oldest).total_seconds() if oldest else 0.0,
                  workers_ready=sum(1 for w in workers if w["state"] == "ready"
                                    and now - w["heartbeat_at"] < READY_HEARTBEAT),
                  sharing_lag=max(0, newest - position), deliveries_queued=queued, deliveries_overdue=overdue)


class Latencies:
    """Observes the two hub-wide histograms from rows written since the last look."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.change_seq: int | None = None  # None: start at the newest row on the first look
        self.delivered_since: datetime | None = None
        #: deliveries already observed in the overlap window (a row may commit after a later timestamp)
        self.seen: dict[str, datetime] = {}

    def observe(self, store: Store) -> None:
        c, e, d = timeline_changes.c, timeline_entries.c, deliveries.c
        with store.engine.connect() as conn:
            if self.change_seq is None or self.delivered_since is None:
                self.change_seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(c.seq), 0))).scalar_one()
                self.delivered_since = datetime.now(UTC)
                recent = conn.execute(sa.select(d.delivery_id, d.delivered_at)
                                      .where(d.delivered_at > self.delivered_since - OVERLAP)).all()
                self.seen = {r.delivery_id: _utc(r.delivered_at) for r in recent}
                return
            changes = conn.execute(sa.select(c.seq, c.kind, c.at, e.received_at)
                                   .outerjoin(timeline_entries, e.event_id == c.event_id)
                                   .where(c.seq > self.change_seq).order_by(c.seq)).all()
            sent = conn.execute(sa.select(d.delivery_id, d.channel, d.delivered_at, e.received_at)
                                .join(timeline_entries, e.event_id == d.information_id)
                                .where(d.delivered_at > self.delivered_since - OVERLAP, d.kind == "share")).all()
        for change in changes:
            self.change_seq = max(self.change_seq, int(change.seq))
            if change.kind == "added" and change.received_at is not None:
                self.metrics.projection_delay.observe(
                    max(0.0, (_utc(change.at) - _utc(change.received_at)).total_seconds()))
        for share in sent:
            if share.delivery_id in self.seen:
                continue
            delivered = self.seen[share.delivery_id] = _utc(share.delivered_at)
            self.metrics.share_delivery.labels(share.channel or "unknown").observe(
                max(0.0, (delivered - _utc(share.received_at)).total_seconds()))
            self.delivered_since = max(self.delivered_since, delivered)
        horizon = self.delivered_since - OVERLAP
        self.seen = {k: v for k, v in self.seen.items() if v > horizon}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MetricsSampler(Job):
    """Reads the hub-wide gauges and latencies every ``interval`` seconds while it holds the lease."""

    def __init__(self, services: Services, audit: AuditLog, metrics: Metrics, hub_wide: HubWide,
                 interval: float) -> None:
        owner = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.sampler_lease = Lease(services.store, LEASE, owner, ttl=timedelta(seconds=max(15.0, 3 * interval)))
        super().__init__("metrics-sampler", every=interval)
        self.services, self.audit, self.hub_wide = services, audit, hub_wide
        self.latencies = Latencies(metrics)

    async def run_once(self) -> float | None:
        store = self.services.store
        held = await asyncio.to_thread(self.sampler_lease.hold)
        self.hub_wide.held = held
        if not held:
            self.latencies = Latencies(self.latencies.metrics)  # a later take-over starts at the newest row
            return None
        try:
            lag = await consumer_lag(self.services.settings, GROUP_ID)
        except HubError as exc:  # the broker is away: keep the last lag, sample the rest
            log.warning("metrics.lag_unavailable", error=str(exc).splitlines()[0][:200])
            lag = self.hub_wide.sample.lag if self.hub_wide.sample else {}
        self.hub_wide.sample = await asyncio.to_thread(read_sample, store, self.audit, lag)
        await asyncio.to_thread(self.latencies.observe, store)
        return None

    async def close(self) -> None:
        self.hub_wide.held = False
        await asyncio.to_thread(self.sampler_lease.release)
