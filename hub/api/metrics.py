"""The API's Prometheus metrics (served at ``/metrics``), in a registry of their own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter("hub_ingest_accepted", "Events accepted", ["topic"], registry=self.registry)
        self.duplicates = Counter("hub_ingest_duplicates", "Duplicate events answered", registry=self.registry)
        self.rejected = Counter("hub_ingest_rejected", "Requests refused as invalid", registry=self.registry)
        self.lag = Gauge("hub_consumer_lag", "Messages not yet processed by the workers", ["topic"],
                         registry=self.registry)
        self.dead = Gauge("hub_dead_letters", "Dead-lettered records not yet replayed", registry=self.registry)
        self.unpublished = Gauge("hub_ingest_unpublished", "Accepted events not yet acknowledged by Kafka",
                                 registry=self.registry)
        self.oldest_unpublished = Gauge(
            "hub_ingest_oldest_unpublished_seconds", "Age of the oldest accepted event not yet acknowledged by Kafka",
            registry=self.registry)
        self.workers_ready = Gauge("hub_workers_ready", "Workers with a fresh ready heartbeat",
                                   registry=self.registry)
        self.sharing_lag = Gauge("hub_sharing_lag", "Timeline changes the sharing step has not decided on yet",
                                 registry=self.registry)
        self.deliveries_queued = Gauge("hub_deliveries_queued", "Shares and notices waiting to be sent",
                                       registry=self.registry)
        self.deliveries_overdue = Gauge(
            "hub_deliveries_overdue", "Queued deliveries due for over 30 s that no deliverer has taken up",
            registry=self.registry)
        self.refused = Counter("hub_requests_refused", "Requests refused before reaching a route, by reason "
                               "(unauthenticated, invalid_token, forbidden, not_found)", ["reason"],
                               registry=self.registry)
        self.audit_dead = Gauge("hub_audit_dead_letters", "Audit records the writer could not store "
                                "(GET /v1/audit/verify)", registry=self.registry)
