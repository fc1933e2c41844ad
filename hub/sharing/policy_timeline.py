"""A household's timeline read under the read policy with one connection per read.

The read policy needs facts about the reader's household (members, linked children, directives) before it
can decide the page's entries. Read apart, they cost a connection checkout of their own on every read (on
PostgreSQL a ping and a rollback, each a round trip to another process). Here the facts query runs on the
timeline query's connection just before its first batch (:class:`hub.stream.readmodel.Prelude`); the view
is built from the facts and decides the page. Later batches (a page reading on past hidden entries) are
narrowed to the children the reader may see anything of.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from hub.db.sealed import sealer
from hub.db.store import Store
from hub.governance.auth import Principal
from hub.sharing.visibility import ReadView, households_from, narrowing, people_query
from hub.stream import readmodel


def read_timeline(store: Store, principal: Principal | None, household_id: str, *, child_id: str | None = None,
                  sector: str | None = None, kind: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, cursor: str | None = None, limit: int = 50
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """The page of ``household_id``'s timeline this reader may see, and the cursor for the next one
    (the same answer as ``readmodel.timeline`` with ``ReadView.load(...).entry_view``)."""
    directives = ReadView.directives_for(principal)
    seal = sealer(store)

    def then(rows: list[tuple[Any, ...]]) -> tuple[readmodel.View, Collection[str] | None]:
        view = ReadView(principal, households_from(seal, [household_id], rows, directives=directives))
        return view.entry_view(household_id, kind), narrowing(view, household_id)

    prelude = readmodel.Prelude(people_query(directives is not False), {"ids": [household_id]}, then)
    return readmodel.timeline(store, household_id, child_id=child_id, sector=sector, kind=kind, since=since,
                              until=until, cursor=cursor, limit=limit, prelude=prelude)
