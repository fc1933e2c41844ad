"""A household's timeline read under the read policy in one statement per page.

The read policy needs facts about the reader's household (members, linked children, directives) before it
can decide the page's entries. Read apart, they cost a statement of their own on every read (on
PostgreSQL a round trip to another process, and a connection checkout with its ping). Here the facts
query rides along with the first batch of the timeline query (:class:`hub.stream.readmodel.Prelude`): one
statement returns both, told apart by a part number; the view is built from the facts and decides the
page. Later batches (a page reading on past hidden entries) are the timeline query alone, narrowed to the
children the reader may see anything of. On SQLite (in-process, no round trip to save) the facts are read
in a statement of their own: there the longer statement cost more to build than the second one to run
(bench/README.md, "Timeline reads under the read policy").
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

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
    if store.engine.dialect.name == "sqlite":  # in-process: no round trip to save, and the longer statement
        view = ReadView.load(store, principal, [household_id])  # costs more to build than a second one
        return readmodel.timeline(store, household_id, child_id=child_id, sector=sector, kind=kind, since=since,
                                  until=until, cursor=cursor, limit=limit, view=view.entry_view(household_id, kind),
                                  only_children=narrowing(view, household_id))
    directives = ReadView.directives_for(principal)

    def then(rows: list[tuple[Any, ...]]) -> tuple[readmodel.View, Collection[str] | None]:
        view = ReadView(principal, households_from([household_id], rows, directives=directives))
        return view.entry_view(household_id, kind), narrowing(view, household_id)

    prelude = readmodel.Prelude(people_query(directives is not False), {"ids": [household_id]}, then)
    return readmodel.timeline(store, household_id, child_id=child_id, sector=sector, kind=kind, since=since,
                              until=until, cursor=cursor, limit=limit, prelude=prelude)
