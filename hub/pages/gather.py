"""What the pages show, gathered with the functions the JSON routes call and the reader's view under the
read policy (:class:`hub.sharing.visibility.ReadView`): the same rows, shaped for people to read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.db.schema import ingest_log, timeline_changes
from hub.db.store import Store, utcnow
from hub.family import summary
from hub.family.summary import Summary
from hub.governance.auth import Principal
from hub.sharing import consents, coordination, delivery, readiness
from hub.sharing.alerts import list_alerts
from hub.sharing.visibility import ReadView, narrowing, readiness_for, shares_for
from hub.stream import readmodel
from hub.stream.team import team_around
from hub.wire.sealing import KeyVault

#: appointments this close count on the caseload
SOON = timedelta(days=14)
#: report states that need someone to act before the appointment
BLOCKED = ("withheld", "delivery_failed", "unread_in_inbox")
#: how much each kind of item weighs on the caseload: a report the clinician cannot get first
SEVERITY = {"withheld": 3, "delivery_failed": 3, "overdue": 3, "alert": 2, "clock": 2, "unread_in_inbox": 1,
            "missing": 1}


@dataclass
class Attention:
    """One thing standing between an appointment and a clinician who has the reports, or an open alert."""

    child_id: str
    what: str
    status: str
    step: str | None
    when: str | None = None  # the appointment's start
    service: str | None = None


@dataclass
class CaseloadRow:
    household_id: str
    children: list[str]
    items: list[Attention] = field(default_factory=list)
    open_alerts: int = 0
    next_appointment: str | None = None
    clocks: list[dict[str, Any]] = field(default_factory=list)  # running statutory clocks, soonest first

    @property
    def weight(self) -> tuple[int, int, str]:
        """Sort key: the worst item first, then how many, then the nearest appointment."""
        worst = max((SEVERITY.get(i.status, 1) for i in self.items), default=0)
        return -worst, -len(self.items), self.next_appointment or "9999"


def attention(ready: dict[str, Any], now: datetime) -> list[Attention]:
    """Appointments in the next two weeks with a report withheld, undelivered, unread or not yet written."""
    out = []
    for child in ready["children"]:
        for a in child["appointments"]:
            if datetime.fromisoformat(a["start"]) - now > SOON:
                continue
            for r in a["reports"]:
                if r["status"] in BLOCKED:
                    step = r["unblock"] or (f"ask {a['service']} to open it in the hub's inbox"
                                            if r["status"] == "unread_in_inbox" else r["why"])
                    out.append(Attention(child["child_id"], r["title"], r["status"], step, a["start"], a["service"]))
            for m in a["expected"]:
                out.append(Attention(child["child_id"], f"report from {m['service']}",
                                     "overdue" if m["overdue"] else "missing", m["unblock"], a["start"], a["service"]))
    return out


def household_records(store: Store, household_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each child's records, read once for readiness, the team and the statutory clocks."""
    return {c: readmodel.child_records(store, household_id, c) for c in readmodel.children(store, household_id)}


def household_readiness(store: Store, view: ReadView, household_id: str, now: datetime,
                        records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Report readiness before each appointment as the reader may see it (the readiness route's answer)."""
    return readiness_for(view, store, household_id, {
        "household_id": household_id, "generated_at": now.isoformat(),
        "children": [readiness.child_readiness(store, household_id, c, now, entries=e) for c, e in records.items()]})


def running_clocks(store: Store, household_id: str, children: list[str], now: datetime,
                   records: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The statutory clocks still running (or overdue) for the reader's visible children, those about to run
    out first: what the clocks route says of each, with its days left."""
    found = coordination.household_clocks(store, household_id, now, records=records)
    running = [{**c, "warn": c["days_left"] is not None and c["days_left"] <= found["warn_days"]}
               for child, clocks in found["children"].items() if child in children
               for c in clocks if c["state"] in ("running", "overdue")]
    return sorted(running, key=lambda c: (c["days_left"], c["deadline"], c["child_id"], c["clock"]))


def caseload(store: Store, principal: Principal, households: list[str]) -> list[CaseloadRow]:
    """The coordinator's families, those with the most standing in the way of an appointment first."""
    now = utcnow()
    rows = []
    view = ReadView.load(store, principal, households)
    for hh in households:
        records = household_records(store, hh)
        ready = household_readiness(store, view, hh, now, records)
        alerts = list_alerts(store, household_id=hh)
        row = CaseloadRow(hh, view.visible_children(hh), attention(ready, now))
        row.clocks = running_clocks(store, hh, row.children, now, records)
        row.items += [Attention(c["child_id"], c["title"], "overdue" if c["state"] == "overdue" else "clock",
                                CLOCK_STEP, c["deadline"]) for c in row.clocks if c["warn"]]
        for a in alerts:
            if a["state"] == "open":
                row.open_alerts += 1
                row.items.append(Attention(a["child_id"], a["details"].get("message") or a["kind"], "alert",
                                           a["details"].get("step") or "open the family page and acknowledge it"))
        starts = [a["start"] for c in ready["children"] for a in c["appointments"]]
        row.next_appointment = min(starts, default=None)
        rows.append(row)
    return sorted(rows, key=lambda r: r.weight)


#: what a coordinator does about a statutory clock close to its deadline (the clock alert's step)
CLOCK_STEP = "ask the service responsible what stands in the way of meeting the deadline"

#: entries per child on one page; the page links to the next ones (the API's cursor)
PAGE = 50


def timeline_page(store: Store, view: ReadView, household_id: str, child_id: str, *, sector: str | None = None,
                  kind: str | None = None, cursor: str | None = None, limit: int = PAGE
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a child's timeline as the reader may see it, and the cursor of the next (the timeline route's
    query and view)."""
    only = narrowing(view, household_id)
    return readmodel.timeline(store, household_id, child_id=child_id, sector=sector or None, kind=kind or None,
                              cursor=cursor or None, limit=limit, view=view.entry_view(household_id, kind or None),
                              only_children=only)


def timeline(store: Store, view: ReadView, household_id: str, child_id: str, *, sector: str | None = None,
             kind: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    return timeline_page(store, view, household_id, child_id, sector=sector, kind=kind, limit=limit)[0]


def family(store: Store, principal: Principal, household_id: str, *, sector: str | None = None,
           kind: str | None = None, child_id: str | None = None, cursor: str | None = None) -> dict[str, Any]:
    """A family as the reader may see it: per child its timeline, team, consents; appointments with report
    readiness; share states; alerts (coordinators only: the caller checks the policy for each part). Each
    child's records are read once for readiness and the team, as the readiness and team routes read them."""
    now = utcnow()
    view = ReadView.load(store, principal, [household_id])
    children = view.visible_children(household_id)
    records = household_records(store, household_id)
    ready = household_readiness(store, view, household_id, now, records)
    clocks = running_clocks(store, household_id, children, now, records)
    by_child = {c["child_id"]: c for c in ready["children"]}
    shares = shares_for(view, store, household_id, delivery.recipient_states(store, household_id, None))
    seen = view.records_view(household_id)
    out = []
    for child in children:
        entries, later = timeline_page(store, view, household_id, child, sector=sector, kind=kind,
                                       cursor=cursor if child == child_id else None)
        out.append({
            "child_id": child,
            "timeline": entries,
            "picture": picture(entries),
            "later": later,
            "team": [asdict(m) for m in team_around(seen(records.get(child, [])))],
            "appointments": by_child.get(child, {}).get("appointments", []),
            "consents": [d for d in consents.list_directives(store, household_id, child)
                         if d["status"] in ("active", "pending_confirmation")],
            "shares": share_summary([s for s in shares if s.get("child_id") == child]),
        })
    return {"household_id": household_id, "children": out, "attention": attention(ready, now), "clocks": clocks}


PICTURE_ROWS = ("health", "social_care", "education", "family")
REPORT_TYPES = ("ReportIssued", "ReportAmended", "AssessmentCompleted", "PlanPublished", "PlanReviewed",
                "EhcPlanIssued", "ResultAvailable")


def picture(entries: list[dict[str, Any]], width: int = 640, left: int = 120, row: int = 36) -> dict[str, Any]:
    """A child's entries drawn across agencies: a row per sector, each entry a mark at its time (a circle for an
    appointment or attendance, a square for a report, a bar for anything else: shape, not colour, says which)."""
    if not entries:
        return {"rows": [], "marks": [], "height": 0}
    times = [e["occurred_at"] for e in entries]
    first, last = min(times), max(times)
    span = max((last - first).total_seconds(), 1.0)
    rows = [s for s in PICTURE_ROWS if any(e["sector"] == s for e in entries)]
    y = {s: 20 + i * row for i, s in enumerate(rows)}
    marks = []
    for e in entries:
        if e["sector"] not in y:
            continue
        kind = e.get("record_type", "")
        shape = ("circle" if kind.startswith(("Appointment", "Attendance")) else
                 "square" if kind in REPORT_TYPES else "bar")
        x = left + (width - left - 10) * (e["occurred_at"] - first).total_seconds() / span
        marks.append({"x": round(x, 1), "y": y[e["sector"]], "shape": shape, "event_id": e["event_id"],
                      "title": e.get("summary") or kind, "when": e["occurred_at"]})
    return {"rows": [(s, y[s]) for s in rows], "marks": marks, "height": 20 + len(rows) * row, "first": first,
            "last": last, "width": width, "left": left}


def share_summary(shares: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Share states per recipient: how many records each has received, has on its way, or has withheld."""
    out: dict[str, dict[str, Any]] = {}
    for s in shares:
        who = s.get("recipient_service") or s.get("recipient_kind") or s["recipient_key"]
        row = out.setdefault(who, {"recipient": who, "received": 0, "on_its_way": 0, "withheld": 0, "other": 0})
        if s["outcome"] != "permit":
            row["withheld"] += 1
        elif s.get("state") in ("delivered", "acknowledged"):
            row["received"] += 1
        elif s.get("state") in ("queued", "sending", "in_doubt"):
            row["on_its_way"] += 1
        else:
            row["other"] += 1
    return sorted(out.values(), key=lambda r: str(r["recipient"]))


def shared_summaries(store: Store, vault: KeyVault, household_id: str, children: list[str]) -> dict[str, Summary]:
    """The family's summaries of these children that the family shares with the child's team (no other is opened)."""
    shared = summary.shared_children(store, household_id)
    out = {c: summary.read(store, vault, household_id, c) for c in children if c in shared}
    return {c: s for c, s in out.items() if s is not None and s.shared}


def latest_change(store: Store, household_id: str) -> int:
    """The household's newest change id: a page's live updates start after it."""
    C = timeline_changes.c
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(C.seq), 0)).where(
            C.household_id == household_id)).scalar_one())


def sent_by(store: Store, agency_id: str, limit: int = 50) -> dict[str, Any]:
    """What an agency sent and where it is: counts per state, and its latest records (its own source ids;
    never a subject). ``published``: on the hub's topics; ``waiting``: logged, to be published (the relay
    retries); ``refused``: the broker refused it for good (dead-lettered)."""
    L = ingest_log.c
    state = sa.case((L.refused_at.is_not(None), "refused"), (L.published_at.is_not(None), "published"),
                    else_="waiting")
    with store.engine.connect() as conn:
        counts: dict[str, int] = {str(k): int(n) for k, n in conn.execute(
            sa.select(state, sa.func.count()).where(L.agency_id == agency_id).group_by(state))}
        latest = [dict(r._mapping) for r in conn.execute(
            sa.select(L.source_system, L.source_id, L.source_version, L.record_type, L.received_at,
                      state.label("state")).where(L.agency_id == agency_id).order_by(L.seq.desc()).limit(limit))]
    return {"counts": {k: counts.get(k, 0) for k in ("published", "waiting", "refused")}, "latest": latest}


def alerts(store: Store, household_id: str) -> list[dict[str, Any]]:
    return list_alerts(store, household_id=household_id)
