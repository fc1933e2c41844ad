"""Coordination routes: the statutory clocks of a household's children.

* ``GET /v1/households/{hid}/clocks`` — each child's statutory clocks (England SEND, Wales ALN; the
  nations of ``HUB_STATUTORY_NATIONS``): what started each, its deadline and legal source, its state
  (``running``, ``overdue``, ``met``, ``late``, ``stopped`` by a recorded exception) and, while it runs,
  the days left, as of today (``as_of``). The household's coordinator only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from hub.core.errors import NotFoundError
from hub.ingest.services import Services
from hub.sharing import coordination
from hub.stream import readmodel


def coordination_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["coordination"])
    store = services.store

    @router.get("/v1/households/{household_id}/clocks")
    async def statutory_clocks(household_id: str) -> dict[str, Any]:
        """The children's statutory clocks with their deadlines and days left."""
        if not await asyncio.to_thread(readmodel.children, store, household_id):
            raise NotFoundError("no such household")
        return await asyncio.to_thread(coordination.household_clocks, store, household_id)

    return router
