"""A lost broker heals by itself under `hub up`: kill -9 of the embedded broker, nothing restarted by hand.

The broker is first stopped (SIGSTOP: it no longer answers), so the outage is seen for certain, then killed.

The supervisor starts a new broker on the same port (the old one's log was in memory), re-seeds it from
the ingest log and restarts the workers; meanwhile `/readyz` says "broker unreachable" and ingest
answers 503 with Retry-After, and a sender that retries afterwards is accepted.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.hub.test_stack import AGENCY, HubUp, events
from tests.support import children_of, pid_alive, ready, wait_until

pytestmark = pytest.mark.broker


def broker_pid(parent: int) -> int:
    (pid,) = [p for p in children_of(parent) if b"broker" in Path(f"/proc/{p}/cmdline").read_bytes()
              and b"hub.cli" not in Path(f"/proc/{p}/cmdline").read_bytes()]
    return pid


def test_a_killed_broker_is_healed_without_restarting_anything(tmp_path: Path) -> None:
    hub = HubUp(tmp_path)
    proc = hub.start()
    try:
        batch = events(40)
        first = httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=batch[:20], timeout=30)
        assert first.status_code == 200, first.text
        wait_until(lambda: len(hub.timeline()) == 20, 30, "20 entries before the outage")
        api_pid = proc.pid
        old = broker_pid(api_pid)
        # first the broker stops answering (its port still open): the outage lasts until the test ends it, where
        # a kill alone is healed within about a second, often before a look at /readyz could see it
        os.kill(old, signal.SIGSTOP)

        def unready() -> httpx.Response | None:
            r = httpx.get(f"{hub.base}/readyz", timeout=5)
            return r if r.status_code == 503 else None

        refused = wait_until(unready, 20, "/readyz to say the broker is unreachable")
        assert "broker unreachable" in refused.text, refused.text
        during = httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=batch[:1] + batch[20:30], timeout=30)
        assert during.status_code == 503, during.text
        assert during.headers.get("retry-after")
        assert "broker" in during.text
        os.kill(old, signal.SIGKILL)  # then it is lost: the supervisor starts a new one
        wait_until(lambda: not pid_alive(old), 10, "the broker to die")

        wait_until(lambda: ready(hub.base), 30, "/readyz ready again")
        assert proc.poll() is None and proc.pid == api_pid  # the API was never restarted
        assert broker_pid(api_pid) != old  # the supervisor started a new broker
        deadline = time.monotonic() + 30
        while True:  # a sender retries what was refused, and sends more
            again = httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=batch, timeout=30)
            if again.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert again.status_code == 200, again.text
        entries = wait_until(lambda: (e := hub.timeline()) and len(e) == 40 and e, 60, "40 entries after the outage")
        assert len({e["event_id"] for e in entries}) == 40  # everything, once
        time.sleep(2)
        assert len(hub.timeline()) == 40
    finally:
        hub.stop()
