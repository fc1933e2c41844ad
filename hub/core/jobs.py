"""Background jobs and the one runner that hosts them in a process.

A :class:`Job` is a piece of recurring work with a name, a due rule and an async :meth:`Job.run_once`:

* **due rule** — ``every`` seconds (``None``: only when woken), and at once whenever its ``wake``
  event is set (another job or the stream sets it when there is something to do);
* **lease** — optionally a lease (``hold()`` / ``release()``, :class:`hub.db.lease.Lease`) so that of
  all the processes running the job one at a time does it: a pass without the lease is skipped, and a
  pass with it renews it while it runs (``keeping()``, where the lease has it), however long it takes;
* **run_once** returns when to look again: ``None`` by the due rule, ``0`` at once (it found a full
  batch), or a number of seconds to pause regardless of its event.

:class:`Runner` runs a set of jobs side by side until :meth:`Runner.stop` (the pass in hand finishes)
or until its task is cancelled. A failing pass never ends the process: expected errors (the database
restarting, the network) are logged as warnings and others as errors, and the job is tried again after
a pause that doubles up to ``max_pause``. Per-job health (passes, consecutive failures, the last pass)
is kept for the process's probes. On the way out the runner gives up its leases and closes its jobs,
so whatever a job owns (an HTTP client, a cursor lease) is released by the job itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.core.errors import HubError
from hub.core.logging import get_logger

log = get_logger(__name__)
#: the first pause after a failed pass; it doubles with each failure in a row
FIRST_PAUSE = 1.0
#: the longest pause after repeated failures
MAX_PAUSE = 30.0


class LeaseLike(Protocol):
    def hold(self) -> bool: ...

    def release(self) -> None: ...


def _kept(lease: LeaseLike | None) -> contextlib.AbstractContextManager[object]:
    """The lease renewed while a pass runs, where it can be (``keeping()``): a pass longer than the lease's
    time to live (a sweep of every household) keeps it, so no other process starts the same chore meanwhile."""
    keeping = getattr(lease, "keeping", None)
    return keeping() if keeping is not None else contextlib.nullcontext()


def expected_errors() -> tuple[type[BaseException], ...]:
    """Failures worth a warning and a retry: the hub's own, the database's, the network's."""
    import httpx
    import sqlalchemy.exc

    return HubError, sqlalchemy.exc.SQLAlchemyError, OSError, httpx.HTTPError


def first_line(exc: BaseException) -> str:
    """The first line only: SQLAlchemy puts the statement and its parameters on the lines after it."""
    return (str(exc).splitlines() or [""])[0][:200]


class Job:
    """One kind of background work; subclasses implement :meth:`run_once` (and :meth:`close` if they own anything)."""

    def __init__(self, name: str, *, every: float | None = None, wake: asyncio.Event | None = None,
                 lease: LeaseLike | None = None, first_after: float = 0.0, max_pause: float = MAX_PAUSE) -> None:
        self.name = name
        self.every = every
        self.wake = wake if wake is not None else asyncio.Event()
        self.lease = lease
        self.first_after = first_after
        self.max_pause = max_pause

    async def run_once(self) -> float | None:
        """One pass; when to look again (``None``: by the due rule; ``0``: at once; else a pause in seconds)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the job owns (called once, when its runner stops)."""


@dataclass
class JobHealth:
    """How a job fares: ``passes`` counts every pass, failed or not; ``ok`` is the last pass's outcome."""

    passes: int = 0
    failures: int = 0  # failed passes in a row
    ok: bool = True
    last_pass: float = field(default_factory=time.monotonic)  # monotonic time the last pass ended (or start)
    last_error: str | None = None

    def report(self) -> dict[str, Any]:
        return {"ok": self.ok, "passes": self.passes, "failures": self.failures,
                "seconds_since_pass": round(time.monotonic() - self.last_pass, 1), "last_error": self.last_error}


class Runner:
    """Runs ``jobs`` side by side in one process; create it in the process that hosts them."""

    def __init__(self, jobs: Sequence[Job], *, first_pause: float = FIRST_PAUSE) -> None:
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self.jobs = list(jobs)
        self.first_pause = first_pause
        self.health = {j.name: JobHealth() for j in jobs}
        self.stopping = asyncio.Event()
        self.stopped = asyncio.Event()  # set once the jobs have given up their leases and closed
        self.expected = expected_errors()

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs if j.name == name)

    def stop(self) -> None:
        """Let the passes in hand finish, then return from :meth:`run`."""
        self.stopping.set()
        for j in self.jobs:
            j.wake.set()

    def report(self) -> dict[str, dict[str, Any]]:
        """Every job's health, for a probe."""
        return {name: h.report() for name, h in self.health.items()}

    async def run(self) -> None:
        """Run every job until :meth:`stop` or cancellation; then give up the leases and close the jobs."""
        try:
            await asyncio.gather(*(self._loop(j) for j in self.jobs))
        finally:
            await self._shut()

    async def _shut(self) -> None:
        leases = {id(j.lease): j.lease for j in self.jobs if j.lease is not None}
        for lease in leases.values():
            with contextlib.suppress(*self.expected):
                await asyncio.to_thread(lease.release)
        for j in self.jobs:
            try:
                await j.close()
            except Exception as exc:  # one job failing to close must not keep the others open
                log.error(f"{j.name}_close_error", error=type(exc).__name__, reason=first_line(exc))
        self.stopped.set()

    async def _pass(self, job: Job) -> tuple[bool, float | None]:
        """One pass of ``job`` (when it holds its lease): (succeeded, when to look again)."""
        health = self.health[job.name]
        try:
            if job.lease is not None and not await asyncio.to_thread(job.lease.hold):
                after: float | None = None  # another process does it: look again when due
            else:
                with _kept(job.lease):
                    after = await job.run_once()
            health.ok, health.failures, health.last_error = True, 0, None
        except self.expected as exc:  # the database restarting, a network error: log, back off, try again
            log.warning(f"{job.name}_failed", error=type(exc).__name__, reason=first_line(exc))
            health.ok, health.failures, health.last_error = False, health.failures + 1, type(exc).__name__
            after = None
        except Exception as exc:  # a bug must not end the process either; it shows in the logs
            log.error(f"{job.name}_error", error=type(exc).__name__, reason=first_line(exc))
            health.ok, health.failures, health.last_error = False, health.failures + 1, type(exc).__name__
            after = None
        health.passes += 1
        health.last_pass = time.monotonic()
        return health.ok, after

    async def _loop(self, job: Job) -> None:
        if job.first_after > 0:
            await self._pause(job.first_after)
        health = self.health[job.name]
        while not self.stopping.is_set():
            job.wake.clear()
            ok, after = await self._pass(job)
            if not ok:
                pause = min(self.first_pause * 2 ** (health.failures - 1), job.max_pause)
                await self._pause(pause)
            elif after is None:
                await self._due(job)
            elif after <= 0:
                await asyncio.sleep(0)  # let the other jobs and signal handlers in
            else:
                await self._pause(after)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` or until the runner stops, whatever wakes the job meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _due(self, job: Job) -> None:
        """Wait until the job is due: ``every`` seconds, woken, or the runner stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job.wake.wait(), job.every)
