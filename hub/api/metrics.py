"""The API process's Prometheus metrics (served at ``/metrics``), in a registry of their own per app.

Counters and the ingest latency are this process's own; the hub-wide gauges and latencies are added by
:mod:`hub.api.sampler` (one replica at a time). Durations are in seconds, as Prometheus names them.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

#: an ingest request, from the request to the answer after the broker's acknowledgement
INGEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: an accepted event to its family's timeline: milliseconds when the workers keep up, minutes when not
PROJECTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
#: a report accepted to its delivery: seconds when consent is in place, days while it is withheld
DELIVERY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter("hub_ingest_accepted", "Events accepted", ["topic"], registry=self.registry)
        self.duplicates = Counter("hub_ingest_duplicates", "Duplicate events answered", registry=self.registry)
        self.rejected = Counter("hub_ingest_rejected", "Requests refused as invalid", registry=self.registry)
        self.refused = Counter("hub_requests_refused", "Requests refused before reaching a route, by reason "
                               "(unauthenticated, invalid_token, forbidden, not_found)", ["reason"],
                               registry=self.registry)
        self.ingest_duration = Histogram(
            "hub_ingest_duration_seconds", "Ingest requests, from receipt to the answer given after the broker "
            "acknowledged, by route and status class", ["route", "status"], buckets=INGEST_BUCKETS,
            registry=self.registry)
        self.projection_delay = Histogram(
            "hub_projection_delay_seconds", "Events from their acceptance by the hub to their family's timeline "
            "(hub-wide: observed by the replica holding the metrics lease)", buckets=PROJECTION_BUCKETS,
            registry=self.registry)
        self.share_delivery = Histogram(
            "hub_share_delivery_seconds", "Reports from their acceptance by the hub to their delivery, by channel "
            "(webhook, inbox, family_view; hub-wide: observed by the replica holding the metrics lease)",
            ["channel"], buckets=DELIVERY_BUCKETS, registry=self.registry)


#: the ingest routes' path prefixes (POST): the hub's own events, the sector routes, FHIR
INGEST_PATHS = ("/v1/events", "/v1/ingest/", "/fhir")


class IngestTiming:
    """ASGI middleware: every POST to an ingest route into ``hub_ingest_duration_seconds``, labelled with the
    route template (never the path: no ids in labels) and the answer's status class."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(INGEST_PATHS):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def answer(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.ingest_duration.labels(template, f"{status // 100}xx").observe(time.perf_counter() - start)
