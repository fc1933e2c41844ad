"""Of several delivering workers, one at a time escalates and sweeps readiness: the periodic sweeps run
under the shared chores lease, so two workers never raise the same alert or escalation side by side."""

from __future__ import annotations

from hub.db.lease import CHORES, Lease
from hub.db.store import Store
from hub.runtime.placement import worker_jobs

SWEEPS = ("sharing.escalate", "sharing.readiness", "sharing.coordination", "sharing.override_expiry",
          "sharing.audit_catch_up")


def test_two_delivering_workers_sweep_one_at_a_time(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    a = {j.name: j for j in worker_jobs(store, "worker-a", deliver=True)}
    b = {j.name: j for j in worker_jobs(store, "worker-b", deliver=True)}
    for name in SWEEPS:
        la, lb = a[name].lease, b[name].lease
        assert isinstance(la, Lease) and isinstance(lb, Lease), name
        assert la.name == lb.name == CHORES
    first, second = a["sharing.escalate"].lease, b["sharing.readiness"].lease
    assert first is not None and second is not None
    assert first.hold() and not second.hold()  # worker-a sweeps; worker-b skips its passes
    first.release()
    assert second.hold()  # worker-a stopped: worker-b takes the sweeps over at once
    assert a["sharing.deliver"].lease is None  # each delivers what it claims
    store.engine.dispose()
