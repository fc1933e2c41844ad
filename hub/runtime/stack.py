"""The embedded stack behind `hub up` and `hub demo`: broker, workers, deliverer and API on one machine.

Start-up order: check settings (one-line ConfigError for each bad one), open and migrate the
database, start the embedded broker (unless HUB_KAFKA_BOOTSTRAP names a cluster), create topics,
re-seed a new broker from the ingest log, publish anything not yet acknowledged, start worker
processes and (unless HUB_DELIVERY_MODE=worker) one `hub deliver` process, then serve the API (which
relays the outbox every few seconds). Which background jobs each process runs: :mod:`hub.runtime.placement`.
Children are started with PR_SET_PDEATHSIG, so SIGKILL of this process takes the broker, the
workers and the deliverer with it; SIGTERM and Ctrl-C stop everything in order, and a child that
dies is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn

from hub.core.errors import BrokerError, ConfigError
from hub.core.logging import get_logger
from hub.core.settings import Settings, bootstrap_file
from hub.ingest.relay import relay_unpublished
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker, die_with_parent, port_is_free
from hub.kafka.topics import INGEST_TOPICS, ensure_topics, message_counts
from hub.stream import projection

log = get_logger(__name__)


async def reseed_if_new(services: Services, bootstrap: str, *, new: bool = False) -> int:
    """If the broker is ``new`` (this stack just started it again: its log was in memory) or holds none of the
    accepted events, publish them all again. A broker known to be new is re-seeded even when it already holds
    some: a request accepted between its start and this check must not hide that the rest is gone."""
    accepted = await asyncio.to_thread(services.store.log_count)
    if not new:  # a broker known to be new is not asked: its rows are marked even if it fails now (the relay job
        # then publishes them)
        counts = await message_counts(services.settings, bootstrap)
        new = sum(counts.get(t.name) or 0 for t in INGEST_TOPICS) == 0
    if new and accepted:
        # the stream positions the database holds are offsets in the lost log: forgotten before any worker
        # reads the new one (a request accepted meanwhile already took an offset there)
        forgotten = await asyncio.to_thread(projection.forget_offsets, services.store)
        marked = await asyncio.to_thread(services.store.mark_all_unpublished)
        log.info("stack.reseed", events=marked, positions_forgotten=forgotten)
    return await relay_unpublished(services.store, services.publisher)


@dataclass
class Stack:
    settings: Settings
    broker: EmbeddedBroker | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    deliverer: subprocess.Popen[bytes] | None = None
    services: Services | None = None
    bootstrap: str = ""

    def preflight(self) -> None:
        s = self.settings
        if not s.schema_dir.is_dir():
            raise ConfigError(f"schema directory {s.schema_dir} does not exist (set HUB_SCHEMA_DIR)")
        if not port_is_free(s.api_host, s.api_port):
            raise ConfigError(f"port {s.api_host}:{s.api_port} is busy (set HUB_API_PORT to a free port)")
        try:
            s.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"data directory {s.data_dir} cannot be created: {exc.strerror}") from exc

    async def start(self) -> Services:
        self.preflight()
        s = self.settings
        if s.embedded_broker:
            self.broker = EmbeddedBroker(log_dir=s.data_dir / "logs").start()
            self.bootstrap = self.broker.bootstrap
            s = self.settings = s.model_copy(update={"kafka_bootstrap": self.bootstrap, "kafka_embedded": True})
            marker = bootstrap_file(s)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(self.bootstrap)
        else:
            self.bootstrap = s.kafka_bootstrap
        services = self.services = Services.build(s, migrate_schema=s.owns_database)
        try:
            created = await asyncio.wait_for(ensure_topics(s), timeout=20)
        except (BrokerError, TimeoutError) as exc:
            raise ConfigError(f"Kafka at {self.bootstrap} is unreachable: {exc or 'timed out'}") from exc
        if created:
            log.info("stack.topics_created", topics=created)
        await services.start()
        await reseed_if_new(services, self.bootstrap)
        self.start_workers(s.workers)
        if s.stack_runs_deliverer:
            self.start_deliverer()
        return services

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HUB_KAFKA_BOOTSTRAP=self.bootstrap, HUB_DATA_DIR=str(self.settings.data_dir),
                   HUB_DATABASE_URL=self.settings.effective_database_url,
                   HUB_SCHEMA_DIR=str(self.settings.schema_dir))
        if self.broker is not None:
            env["HUB_KAFKA_EMBEDDED"] = "true"
        if self.settings.stack_runs_deliverer:  # the deliverer delivers: the workers only decide
            env["HUB_DELIVERY_MODE"] = "process"
        return env

    def _spawn_worker(self, index: int) -> subprocess.Popen[bytes]:
        env = {**self.worker_env(), "HUB_WORKER_NAME": f"worker-{index}"}
        return subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], env=env,
                                preexec_fn=die_with_parent, stdin=subprocess.DEVNULL)

    def start_workers(self, n: int) -> None:
        for _ in range(n):
            self.workers.append(self._spawn_worker(len(self.workers)))
        log.info("stack.workers_started", pids=[w.pid for w in self.workers])

    def _spawn_deliverer(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "hub.cli", "deliver"], env=self.worker_env(),
                                preexec_fn=die_with_parent, stdin=subprocess.DEVNULL)

    def start_deliverer(self) -> None:
        self.deliverer = self._spawn_deliverer()
        log.info("stack.deliverer_started", pid=self.deliverer.pid)

    def children(self) -> list[subprocess.Popen[bytes]]:
        return [*self.workers, *([self.deliverer] if self.deliverer is not None else [])]

    async def restart_broker(self) -> None:
        """The embedded broker died: start a new one on the same port, re-seed it, and restart the workers.

        Its log was in memory, so the new broker is empty: the topics are created again and every
        accepted event is published again from the ingest log (projections are idempotent). The
        workers' consumer group and changelogs went with the old broker, so they are restarted too
        (SIGTERM, SIGKILL after 3 s; this loop starts them again). The API's producer reconnects by itself.
        """
        assert self.broker is not None and self.services is not None
        log.warning("stack.broker_restarted", status=self.broker.process.returncode if self.broker.process else None)
        self.broker.process = None
        try:
            await asyncio.to_thread(self.broker.start)
            await asyncio.wait_for(ensure_topics(self.settings), timeout=20)
        except (ConfigError, BrokerError, TimeoutError) as exc:
            log.warning("stack.broker_restart_failed", error=str(exc)[:200])
            return  # tried again at the next look
        await self._stop_workers_for_new_broker()
        try:
            events = await reseed_if_new(self.services, self.bootstrap, new=True)
        except BrokerError as exc:  # the relay job publishes what is left
            log.warning("stack.reseed_failed", error=str(exc)[:200])
            return
        log.info("stack.broker_reseeded", events=events)

    async def _stop_workers_for_new_broker(self, grace: float = 3.0) -> None:
        """SIGTERM the workers; SIGKILL any still running after ``grace`` s (with its broker gone a worker
        can hang a minute stopping; projections are idempotent, so a kill loses nothing)."""
        running = [w for w in self.workers if w.poll() is None]
        for w in running:
            w.terminate()
        for w in running:
            try:
                await asyncio.to_thread(w.wait, grace)
            except subprocess.TimeoutExpired:
                w.kill()

    async def supervise(self, interval: float = 1.0) -> None:
        """Restart the embedded broker, a worker or the deliverer that died (crash or kill -9); the others carry on."""
        while True:
            await asyncio.sleep(interval)
            b = self.broker
            if b is not None and (b.process is None or b.process.poll() is not None):
                await self.restart_broker()
            for i, w in enumerate(self.workers):
                if w.poll() is not None:
                    log.warning("stack.worker_restarted", index=i, pid=w.pid, status=w.returncode)
                    self.workers[i] = self._spawn_worker(i)
            d = self.deliverer
            if d is not None and d.poll() is not None:
                log.warning("stack.deliverer_restarted", pid=d.pid, status=d.returncode)
                self.start_deliverer()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every worker has a fresh ready heartbeat (its partitions assigned, state recovered)."""
        assert self.services is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await asyncio.to_thread(self.services.store.workers)
            alive = {f"-{w.pid}" for w in self.workers if w.poll() is None}
            ready = [r for r in rows if r["state"] == "ready" and any(r["worker_id"].endswith(a) for a in alive)]
            if len(ready) >= len(alive) > 0:
                return
            dead = [w for w in self.workers if w.poll() is not None]
            if dead:
                raise ConfigError(f"a stream worker exited with status {dead[0].returncode} during start-up")
            if self.deliverer is not None and self.deliverer.poll() is not None:
                raise ConfigError(f"the deliverer exited with status {self.deliverer.returncode} during start-up")
            await asyncio.sleep(0.2)
        raise ConfigError(f"stream workers did not become ready within {timeout:.0f}s")

    async def stop(self) -> None:
        children = self.children()
        for w in children:
            if w.poll() is None:
                w.terminate()  # the deliverer finishes the pass in hand, the workers their batch
        for w in children:
            try:
                await asyncio.to_thread(w.wait, 15)
            except subprocess.TimeoutExpired:
                w.kill()
        self.workers.clear()
        self.deliverer = None
        if self.services is not None:
            await self.services.stop()
            await asyncio.to_thread(self.services.store.clear_workers)
            self.services.store.engine.dispose()
        if self.broker is not None:
            self.broker.stop()
            bootstrap_file(self.settings).unlink(missing_ok=True)

    async def serve_api(self) -> None:
        from hub.pages.site import create_site

        assert self.services is not None
        config = uvicorn.Config(create_site(self.services), host=self.settings.api_host, port=self.settings.api_port,
                                log_config=None, access_log=False)
        server = _QuietServer(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.request_exit)
        log.info("stack.api", url=f"http://{self.settings.api_host}:{self.settings.api_port}")
        supervisor = asyncio.create_task(self.supervise())
        try:
            await server.serve()
        finally:
            supervisor.cancel()
        log.info("stack.stopping")


class _QuietServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after serving, which would kill us before the stack stops in order;
    the stack owns signals instead and asks the server to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        self.should_exit = True
