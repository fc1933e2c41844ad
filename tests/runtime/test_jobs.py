"""The job runner (hub/core/jobs.py): back-off after a failure, a job woken by its event, a leased job run
by one of two runners, a clean stop; and the API process free of the faust worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from hub.core.errors import HubError
from hub.core.jobs import Job, Runner
from hub.db.lease import Lease
from hub.db.schema import stream_cursors
from hub.db.store import Store


class Recorder(Job):
    """Records when it ran; fails with the next of ``failures`` while any are left."""

    def __init__(self, name: str = "test.job", *, failures: list[BaseException] | None = None,
                 every: float | None = 0.01, lease: Lease | None = None, takes: float = 0.0) -> None:
        super().__init__(name, every=every, lease=lease)
        self.failures = list(failures or [])
        self.takes = takes
        self.runs: list[float] = []
        self.finished = 0
        self.closed = 0

    async def run_once(self) -> float | None:
        self.runs.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        await asyncio.sleep(self.takes)
        self.finished += 1
        return None

    async def close(self) -> None:
        self.closed += 1


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


async def test_a_failing_job_backs_off_logs_and_carries_on(capfd: pytest.CaptureFixture[str]) -> None:
    job = Recorder(failures=[HubError("database away"), RuntimeError("a bug"), HubError("still away")], every=0.01)
    runner = Runner([job], first_pause=0.05)
    capfd.readouterr()
    task = asyncio.create_task(runner.run())
    await until(lambda: job.finished >= 1)
    health = runner.health["test.job"]
    assert health.ok and health.failures == 0 and health.passes >= 4
    runner.stop()
    await asyncio.wait_for(task, 5)
    first, second, third, fourth = job.runs[:4]
    assert second - first >= 0.05 and third - second >= 0.1 and fourth - third >= 0.2  # the pause doubles
    logs = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert [(e["event"], e["level"]) for e in logs if "test.job" in e["event"]] == [
        ("test.job_failed", "warning"), ("test.job_error", "error"), ("test.job_failed", "warning")]


async def test_back_off_is_capped_and_health_shows_the_failure() -> None:
    job = Recorder(failures=[OSError("refused")] * 50, every=0.01)
    job.max_pause = 0.02
    runner = Runner([job], first_pause=0.01)
    task = asyncio.create_task(runner.run())
    await until(lambda: len(job.runs) >= 6)
    health = runner.report()["test.job"]
    assert health["ok"] is False and health["failures"] >= 5 and health["last_error"] == "OSError"
    gaps = [b - a for a, b in zip(job.runs[2:], job.runs[3:], strict=False)]
    assert all(g < 0.5 for g in gaps)  # capped at max_pause, not doubling on
    runner.stop()
    await asyncio.wait_for(task, 5)
    assert not task.exception()


async def test_a_job_without_an_interval_runs_when_woken() -> None:
    job = Recorder(every=None)
    runner = Runner([job])
    task = asyncio.create_task(runner.run())
    await until(lambda: len(job.runs) == 1)  # once at start
    await asyncio.sleep(0.1)
    assert len(job.runs) == 1  # nothing due until woken
    job.wake.set()
    await until(lambda: len(job.runs) == 2)
    job.wake.set()
    await until(lambda: len(job.runs) == 3)
    runner.stop()
    await asyncio.wait_for(task, 5)


async def test_a_leased_job_is_run_by_one_of_two_runners(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    jobs = {owner: Recorder(lease=Lease(store, "test-lease", owner)) for owner in ("a", "b")}
    runners = [Runner([job]) for job in jobs.values()]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    await until(lambda: sum(j.finished for j in jobs.values()) >= 5)
    holder = next(owner for owner, job in jobs.items() if job.finished)
    other = "b" if holder == "a" else "a"
    assert jobs[other].finished == 0
    assert runners[0].health["test.job"].ok and runners[1].health["test.job"].ok  # skipping is no failure

    runners[0 if holder == "a" else 1].stop()  # the holder stops cleanly: the lease is given up ...
    await until(lambda: jobs[other].finished >= 3)  # ... and the other takes over at once
    runners[1 if holder == "a" else 0].stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    with store.engine.connect() as conn:
        owner = conn.execute(sa.select(stream_cursors.c.owner).where(stream_cursors.c.name == "test-lease")).scalar()
    assert owner is None
    store.engine.dispose()


async def test_a_pass_longer_than_the_lease_keeps_it_and_no_other_runner_starts_the_chore(sqlite_url: str) -> None:
    # a sweep of every household can take longer than the lease lives: another process must not take the chore
    # over half way and run the same sweep beside it
    store = Store.open(sqlite_url)
    ttl = timedelta(seconds=0.6)
    first = Recorder(lease=Lease(store, "test-lease", "a", ttl=ttl), takes=2.0, every=None)
    second = Recorder(lease=Lease(store, "test-lease", "b", ttl=ttl), every=0.05)
    one, two = Runner([first]), Runner([second])
    tasks = [asyncio.create_task(one.run())]
    await until(lambda: len(first.runs) == 1)
    tasks.append(asyncio.create_task(two.run()))
    await until(lambda: first.finished == 1, timeout=10)
    assert second.runs == [] or min(second.runs) >= first.runs[0] + 2.0  # nothing while the long pass ran
    one.stop()  # the pass over, the lease given up: the other takes the chore at once
    await until(lambda: second.finished >= 1)
    two.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    store.engine.dispose()


async def test_stop_lets_the_pass_in_hand_finish_and_closes_the_jobs() -> None:
    slow, idle = Recorder("test.slow", takes=0.2), Recorder("test.idle", every=None)
    runner = Runner([slow, idle])
    task = asyncio.create_task(runner.run())
    await until(lambda: len(slow.runs) == 1)
    runner.stop()
    await asyncio.wait_for(task, 5)
    assert slow.finished == 1 and len(slow.runs) == 1  # finished what it was doing, started nothing new
    assert slow.closed == idle.closed == 1 and runner.stopped.is_set()


async def test_cancelling_the_runner_closes_the_jobs() -> None:
    job = Recorder(takes=10.0)
    runner = Runner([job])
    task = asyncio.create_task(runner.run())
    await until(lambda: len(job.runs) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert job.closed == 1 and runner.stopped.is_set()


def test_job_names_are_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Runner([Recorder("same"), Recorder("same")])


def test_the_api_does_not_import_the_faust_worker() -> None:
    code = "import hub.api.app, sys; assert 'faust' not in sys.modules, 'faust imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
