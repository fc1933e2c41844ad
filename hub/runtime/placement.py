"""Which background jobs run where (:mod:`hub.runtime.sharing_jobs`), by ``HUB_DELIVERY_MODE``.

* A stream worker always follows the change feed and decides (:func:`worker_jobs`). Where it delivers
  (``worker``, or ``auto`` for a bare ``hub worker``) it also delivers, escalates
  and sweeps readiness, every ``WORKER_TICK`` second, the sweeps under the chores lease (of several
  delivering workers one escalates and sweeps at a time; each delivers what it claims); in ``process``
  mode it leaves all that to
  ``hub deliver`` (:func:`deliverer_jobs`), where the chores run under the chores lease, one deliverer at
  a time. Safeguarding overrides that ended are decided again by a chore under the chores lease
  (:class:`hub.runtime.sharing_jobs.OverrideExpiryJob`), once each, and resolved alerts past their retention
  are removed by another (:class:`hub.runtime.sharing_jobs.AlertRetentionJob`, hourly). The API process
  relays the outbox (:class:`hub.ingest.relay.RelayJob`, hosted by :func:`hub.api.app.create_app`); `hub up`
  runs the three (:mod:`hub.runtime.stack`).
* The audit checkpoint (:class:`hub.governance.checkpoint_writer.CheckpointJob`) goes with the chores, under
  the chores lease, wherever settings are given (every ``HUB_AUDIT_CHECKPOINT_INTERVAL`` s; 0: none).
"""

from __future__ import annotations

import asyncio

from hub.core.jobs import Job
from hub.core.settings import Settings, sharing_settings
from hub.db.lease import CHORES, Lease
from hub.db.store import Store
from hub.governance.checkpoint_writer import CheckpointJob
from hub.runtime.sharing_jobs import (
    AlertRetentionJob,
    AuditCatchUpJob,
    CoordinationJob,
    DeliveryJob,
    EscalationJob,
    FollowJob,
    OverrideExpiryJob,
    ReadinessJob,
)

#: seconds between a delivering worker's looks for due deliveries and escalations
WORKER_TICK = 1.0


def checkpoint_jobs(store: Store, settings: Settings | None, chores: Lease) -> list[Job]:
    """The audit checkpoint job, where settings are given and the interval is not 0."""
    if settings is None or settings.audit_checkpoint_interval <= 0:
        return []
    return [CheckpointJob(store, settings, every=settings.audit_checkpoint_interval, lease=chores)]


def worker_jobs(store: Store, owner: str, *, deliver: bool, projected: asyncio.Event | None = None,
                settings: Settings | None = None) -> list[Job]:
    """A stream worker's sharing jobs; ``projected`` is set when the worker projected a batch."""
    if not deliver:  # HUB_DELIVERY_MODE=process: `hub deliver` does the rest
        return [FollowJob(store, owner, wake=projected)]
    chores = Lease(store, CHORES, owner)
    deliveries = DeliveryJob(store, every=WORKER_TICK)
    readiness_every = max(sharing_settings().readiness_interval, WORKER_TICK)
    coordination_every = max(sharing_settings().coordination_interval, WORKER_TICK)
    return [FollowJob(store, owner, wake=projected, deliveries=deliveries), deliveries,
            AuditCatchUpJob(store, every=WORKER_TICK, lease=chores),
            EscalationJob(store, every=WORKER_TICK, lease=chores),
            OverrideExpiryJob(store, every=WORKER_TICK, lease=chores),
            ReadinessJob(store, every=readiness_every, lease=chores),
            CoordinationJob(store, every=coordination_every, lease=chores),
            AlertRetentionJob(store, lease=chores), *checkpoint_jobs(store, settings, chores)]


def deliverer_jobs(store: Store, owner: str, deliveries: DeliveryJob, *, chores_every: float,
                   escalate_every: float, settings: Settings | None = None) -> list[Job]:
    """`hub deliver`'s jobs: ``deliveries``, and the chores by whichever deliverer holds the chores lease."""
    chores = Lease(store, CHORES, owner)
    readiness_every = max(sharing_settings().readiness_interval, chores_every)
    coordination_every = max(sharing_settings().coordination_interval, chores_every)
    return [deliveries, AuditCatchUpJob(store, every=chores_every, lease=chores),
            EscalationJob(store, every=escalate_every, lease=chores),
            OverrideExpiryJob(store, every=escalate_every, lease=chores),
            ReadinessJob(store, every=readiness_every, lease=chores),
            CoordinationJob(store, every=coordination_every, lease=chores), AlertRetentionJob(store, lease=chores),
            *checkpoint_jobs(store, settings, chores)]
