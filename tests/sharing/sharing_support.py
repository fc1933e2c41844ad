"""Helpers for the sharing tests: real Avro encode/decode of InboundEvents (no broker), then projection
and the sharing step following the change feed, exactly as the worker runs them."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.core.events import InboundEvent, SubjectRef
from hub.db.store import Store
from hub.ingest.pseudonym import Pseudonymiser
from hub.ingest.service import IngestService
from hub.sharing.delivery import DeliveryStats, deliver_due
from hub.sharing.follower import Follower
from hub.sharing.processor import SharingResult
from hub.stream import projection
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import make_serde

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key-0123456789abcdef"
Decoded = list[tuple[str, str, dict[str, Any]]]


class Feeder:
    """Encode events as the ingest service does, decode them as the worker does, project, share."""

    def __init__(self, store: Store, clock: datetime) -> None:
        self.store = store
        self.catalogue = SchemaCatalogue(ROOT / "schemas")
        self.serde = make_serde(self.catalogue)
        self.pseudonymise = Pseudonymiser(KEY.encode())
        self.ingest = IngestService(store, self.catalogue, self.serde, None,  # type: ignore[arg-type]
                                    self.pseudonymise, clock=lambda: clock)
        self.follower = Follower(store, "sharing-tests")

    def decode(self, events: list[InboundEvent]) -> Decoded:
        prepared, problems = self.ingest.prepare(events)
        assert not problems, problems
        out: Decoded = []
        for p in prepared:
            assert p is not None
            d = self.serde.decode(p.row["value"])
            out.append((d.record_type, self.catalogue.writer(d.record_type).ce_type, d.record))
        return out

    def feed(self, events: list[InboundEvent], now: datetime) -> SharingResult:
        decoded = self.decode(events)
        projection.apply(self.store, decoded)
        return self.follow(now)

    def follow(self, now: datetime) -> SharingResult:
        """Run the sharing step over everything new in the change feed, as the worker's follower does."""
        step = self.follower.step(now)
        assert step.held, "the test's follower should hold the sharing cursor"
        assert not step.more, "a test batch should fit one pass"
        return step.result


def permit_directive(directive_id: str, child_id: str, made_at: datetime, *, sectors: tuple[str, ...] = ("health",),
                     agencies: tuple[str, ...] | None = None, decision: str = "permit") -> Directive:
    return Directive(
        id=directive_id, child_id=child_id, made_by="parent-1", made_by_role=Grantor.PARENT, made_at=made_at,
        decision=DirectiveDecision(decision),
        scope=Scope(sectors=frozenset(Sector(s) for s in sectors),
                    agency_ids=frozenset(agencies) if agencies else None,
                    purposes=frozenset({Purpose.DIRECT_CARE})))


def consent_event(directive: Directive, subject: SubjectRef, *, version: int = 1) -> InboundEvent:
    return InboundEvent(record_type="ConsentGranted", sector="family", source_system="hub-consent",
                        source_id=directive.id, occurred_at=directive.made_at, subject=subject,
                        source_version=version,
                        body={"directive_id": directive.id, "granted_by": "family",
                              "fhir_consent": json.dumps(directive_to_fhir_dict(directive))})


def withdraw_event(directive_id: str, subject: SubjectRef, at: datetime) -> InboundEvent:
    return InboundEvent(record_type="ConsentWithdrawn", sector="family", source_system="hub-consent",
                        source_id=f"{directive_id}-withdrawn", occurred_at=at, subject=subject,
                        body={"directive_id": directive_id, "withdrawn_by": "family"})


def deliver(store: Store, at: datetime) -> DeliveryStats:
    """One delivery pass at ``at``, as a deliverer runs it."""
    async def run() -> DeliveryStats:
        async with httpx.AsyncClient() as client:
            return await deliver_due(store, client, at)
    return asyncio.run(run())


class Webhook:
    """A real local HTTP endpoint standing in for an agency system (the only stand-in these tests use)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        import http.server
        import threading

        self.status = status
        self.delay = delay  # seconds before answering, like an agency's endpoint under load
        self.gate: threading.Event | None = None  # when set, each answer waits until the gate opens
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as an agency's endpoint would

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.gate is not None:
                    outer.gate.wait(8)  # under the hub's 10 s POST timeout
                outer.requests.append({"headers": dict(self.headers.items()), "body": body, "path": self.path,
                                       "at": time.time()})
                reply = b'{"received":true}'
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # the default backlog (5) resets connections when the hub opens dozens at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hub"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stored_deliveries(store: Store, *where: Any) -> list[dict[str, Any]]:
    """``deliveries`` rows as the hub keeps them, each payload opened (it is sealed at rest under the child's
    member key, hub.sharing.payloads)."""
    import sqlalchemy as sa

    from hub.db.schema import deliveries
    from hub.db.sealed import sealer
    from hub.sharing import payloads

    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(deliveries).where(*where))]
    seal = sealer(store)
    return [r | {"payload": payloads.text(seal, r["delivery_id"], r["payload"])} for r in rows]
