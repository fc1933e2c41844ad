"""Runs the demo: the embedded stack, the seed journeys through the ingest service, then a readable
account of what the hub holds for each family, child by child, with the agency of each entry."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hub.core.errors import ConfigError
from hub.core.settings import Settings
from hub.demo.people import sign_in_links
from hub.demo.scenario import Journey, build
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.runtime.stack import Stack
from hub.sharing.visibility import ReadView
from hub.stream import readmodel
from hub.stream.timeline import agency_label

BATCH = 20


async def publish(services: Services, journey: Journey, console: Console) -> Counter[str]:
    statuses: Counter[str] = Counter()
    with Progress(TextColumn("publishing agency events"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("publish", total=len(journey.events))
        for i in range(0, len(journey.events), BATCH):
            batch = journey.events[i:i + BATCH]
            for a in await services.ingest.accept(batch):
                statuses[a.status] += 1
            progress.update(task, advance=len(batch))
    return statuses


async def wait_projected(services: Services, journey: Journey, console: Console, timeout: float = 60) -> None:
    """Until the workers have projected every event of the journey (or a clear error)."""
    want = {e.source_system + "/" + e.source_id for e in journey.events if e.record_type != "IdentityLinked"}
    import sqlalchemy as sa

    from hub.db.schema import timeline_entries
    from hub.ingest.service import event_id_for

    ids = [event_id_for(*k.split("/", 1)) for k in want]
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("stream workers projecting"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("project", total=len(ids))
        while True:
            with services.store.engine.connect() as conn:
                got = conn.execute(sa.select(sa.func.count()).select_from(timeline_entries)
                                   .where(timeline_entries.c.event_id.in_(ids))).scalar_one()
            progress.update(task, completed=got)
            if got >= len(ids):
                return
            if time.monotonic() > deadline:
                raise ConfigError(f"workers projected {got} of {len(ids)} events in {timeout:.0f}s")
            await asyncio.sleep(0.1)


def show(services: Services, journey: Journey, console: Console) -> None:
    """Each household's timeline as its parents see it: the read policy applies here as on every read path
    (a held diagnosis or a safeguarding entry is not printed)."""
    labels = {p.child_id: p.label for p in journey.people}
    for hh in readmodel.households(services.store):
        family = Principal(f"parents-{hh.household_id}", "parent", household=hh.household_id)
        view = ReadView.load(services.store, family, [hh.household_id])
        entries, _ = readmodel.timeline(services.store, hh.household_id, limit=500,
                                        view=view.entry_view(hh.household_id))
        by_child: dict[str, list[dict[str, object]]] = {}
        for e in entries:
            by_child.setdefault(str(e["child_id"]), []).append(e)
        sectors = Counter(agency_label(str(e["sector"])) for e in entries)
        console.rule(f"[bold]{hh.household_id}[/]  {len(entries)} entries from "
                     + ", ".join(f"{n} {s.lower()}" for s, n in sectors.most_common()))
        for child, rows in by_child.items():
            table = Table(title=f"{labels.get(child, child)}  [dim]{child}[/]", title_justify="left",
                          show_lines=False, expand=True)
            table.add_column("when", no_wrap=True)
            table.add_column("agency", no_wrap=True)
            table.add_column("what")
            for r in rows:
                when = r["occurred_at"]
                table.add_row(when.strftime("%d %b %Y") if hasattr(when, "strftime") else str(when),
                              agency_label(str(r["sector"])), str(r["summary"]))
            console.print(table)
    parked = readmodel.parked_count(services.store)
    console.print(f"[dim]{parked} entries parked for subjects not yet linked to a child[/]")


async def run_demo(settings: Settings, *, serve: bool, console: Console) -> None:
    stack = Stack(settings)
    try:
        services = await stack.start()
        console.print(f"[bold]hub demo[/]: broker {stack.bootstrap}, database "
                      f"{services.store.engine.url.render_as_string(hide_password=True)}, "
                      f"{len(stack.workers)} stream worker(s)")
        await stack.wait_ready()
        journey = build()
        statuses = await publish(services, journey, console)
        console.print(f"accepted {statuses['accepted']} new event versions, {statuses['duplicate']} already held")
        await wait_projected(services, journey, console)
        show(services, journey, console)
        from hub.demo import report_journey

        morgan = await report_journey.run(services, console)
        from hub.demo import referral_journey

        await referral_journey.run(services, console)
        if serve:
            base = f"http://{stack.settings.api_host}:{stack.settings.api_port}"
            waiting = await report_journey.leave_waiting(services, console)
            evans = next(p for p in journey.people if p.child_id == "child-evans-3")  # Ffion, the eldest
            links = sign_in_links(services, base, waiting, ["household-evans", morgan, waiting.household_id],
                                  (evans.household_id, evans.child_id))
            console.rule("[bold]Pages[/]")
            console.print(f"Open {base}/ . Each link below signs one person in, once, within "
                          f"{stack.settings.signin_link_minutes:.0f} minutes (`hub signin-link` makes more):")
            for who, url in links:
                console.print(f"  {who}:\n    {url}", soft_wrap=True)
            console.print(f"serving the API and the pages on {base} (Ctrl-C stops)")
            await stack.serve_api()
    finally:
        await stack.stop()
