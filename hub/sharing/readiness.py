"""Report readiness: before each upcoming appointment, will the clinician have the reports?

For every upcoming appointment of every child in a household: each shareable record the child has
(reports, assessments, results, plans, referral outcomes — not those the appointment's own service
wrote), whether the clinician can see it (``will_see``: decision permit and delivered or
acknowledged; ``on_its_way``: permit, still queued; ``unread_in_inbox``: permit, waiting unread in
the agency's inbox), or why it is withheld and the step that unblocks
it ("ask the family for consent to share with <service>", "ask <producer> to release the held
report"), or ``not_decided`` (the service is not yet in the team around the child). When the
appointment is booked with a named professional, their own decision counts where the family's
directives decide them apart from their service (a professional refused sees ``withheld`` even
though their service holds a copy; one permitted alone sees it through the share addressed to
them). Then the reports
that are expected but not yet written: an AssessmentCompleted, or a referral a service accepted,
with no ReportIssued from that service since; overdue after ``report_days`` (default 28).

:func:`sweep` turns this into alerts (table ``alerts``): ``readiness`` to the coordinator when an
appointment is at most ``warn_days`` (default 7) away and something is withheld or overdue, and
``report_request`` to the producing service for each overdue report. Each alert is raised once,
and the same sweep resolves it once its condition clears: a readiness alert when nothing is
withheld or overdue any more before its appointment (consent given, the report released, written
or delivered), when the appointment has passed or is no longer booked for that time; a report
request when the service has issued the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.core import records
from hub.db.schema import alerts, deliveries, share_decisions
from hub.db.sealed import Sealer, sealer_of
from hub.db.store import Store, as_utc, utcnow
from hub.sharing.alerts import coordinator_of, raise_alert, resolve
from hub.sharing.inbox import UNREAD_IN_INBOX
from hub.sharing.model import professional_key, service_key, shareable_from
from hub.sharing.rounds import latest_share
from hub.sharing.sweep_scope import Looked, SweepScope
from hub.stream import readmodel
from hub.stream.household_records import CHUNK, household_records
from hub.stream.team import upcoming

SD = share_decisions.c
DL = deliveries.c
A = alerts.c
KINDS = ("readiness", "report_request")
#: children, households or alert keys per query
KEYS_CHUNK = 300


def _label(r: dict[str, Any], record_type: str) -> str:
    """The short title of shareable information: its schema's ``hub.label``, else the record type."""
    spec = records.catalogue().types.get(record_type)
    return (spec.label.render(r) if spec is not None and spec.label is not None else "") or record_type


def expected_reports(entries: list[dict[str, Any]], now: datetime, report_days: int = 28) -> list[dict[str, Any]]:
    """Reports a service owes: an assessment done or a referral accepted, and no report from it since."""
    reports: dict[tuple[str, str], list[datetime]] = {}
    report_types = records.catalogue().report_types  # shareable as "report" in their schema
    for e in entries:
        if e["record_type"] in report_types:
            svc = e["record"].get("service") or {}
            reports.setdefault((svc.get("agency_id", ""), svc.get("service_name", "")), []).append(e["occurred_at"])
    out = []
    for e in entries:
        r, kind = e["record"], e["record_type"]
        if not (kind == "AssessmentCompleted" or (kind == "ReferralOutcome" and r.get("outcome") == "accepted")):
            continue
        svc = r.get("service") or {}
        key = (svc.get("agency_id", ""), svc.get("service_name", ""))
        if any(t >= e["occurred_at"] for t in reports.get(key, ())):
            continue
        due = e["occurred_at"] + timedelta(days=report_days)
        out.append({"service": key[1], "agency_id": key[0], "trigger": kind, "trigger_event_id": e["event_id"],
                    "since": e["occurred_at"].isoformat(), "due_at": due.isoformat(), "overdue": now > due,
                    "status": "not_yet_written",
                    "unblock": f"ask {key[1]} to write and issue the report"})
    return out


def _clinicians(appts: list[Any]) -> set[str]:
    """The recipient keys whose decisions say what the appointments' clinicians see: each appointment's service,
    and its named professional."""
    keys = {service_key(a.agency_id, a.service) for a in appts}
    return keys | {professional_key(a.agency_id, a.service, a.professional_id) for a in appts if a.professional_id}


def _decisions(store: Store, child_ids: list[str], recipients: set[str]
               ) -> dict[str, dict[tuple[str, int, str], dict[str, Any]]]:
    """Each child's current share decisions for ``recipients`` with their latest delivery, by (information,
    version, recipient)."""
    j = share_decisions.join(deliveries, latest_share(share_decisions), isouter=True)
    out: dict[str, dict[tuple[str, int, str], dict[str, Any]]] = {c: {} for c in child_ids}
    ids, keys = sorted(out), sorted(recipients)
    with store.engine.connect() as conn:
        for i in range(0, len(ids) if keys else 0, KEYS_CHUNK):
            q = sa.select(SD.child_id, SD.decision_id, SD.information_id, SD.information_version, SD.recipient_key,
                          SD.outcome, SD.rule_id, SD.reasons, DL.state, DL.channel, DL.why).select_from(j).where(
                SD.child_id.in_(ids[i:i + KEYS_CHUNK]), SD.recipient_key.in_(keys), SD.current.is_(True))
            result = conn.execute(q)
            names = list(result.keys())
            for r in result:  # a plain dict a row (a Row's mapping view costs more than the rest of the read)
                row = dict(zip(names, r, strict=True))
                out[r.child_id][(r.information_id, r.information_version, r.recipient_key)] = row
    return out


def _for_clinician(decisions: dict[tuple[str, int, str], dict[str, Any]], iid: str, version: int, service_key: str,
                   professional_key: str | None) -> dict[str, Any] | None:
    """The decision that governs what the appointment's clinician sees: theirs where they have one."""
    svc = decisions.get((iid, version, service_key))
    own = decisions.get((iid, version, professional_key)) if professional_key else None
    if own is None:
        return svc
    if own["outcome"] == "permit" and own["state"] not in ("delivered", "acknowledged") and svc is not None \
            and svc["outcome"] == "permit" and svc["state"] in ("delivered", "acknowledged"):
        return svc  # permitted, and their service already holds a copy they may see
    return own


def _report_status(dec: dict[str, Any] | None, producer: str, service: str) -> tuple[str, str | None, str | None]:
    if dec is None:
        return "not_decided", "the service is not yet in the team around the child", None
    if dec["outcome"] == "permit":
        if dec["state"] in ("delivered", "acknowledged"):
            return "will_see", None, None
        if dec["state"] == "failed":
            return "delivery_failed", "the share could not be delivered", f"check {service}'s webhook"
        if dec["state"] == "queued" and dec["channel"] == "inbox":
            return "unread_in_inbox", UNREAD_IN_INBOX, None
        return "on_its_way", None, None
    reasons = " ".join(json.loads(dec["reasons"]))
    if dec["outcome"] == "hold":
        return "withheld", reasons, f"ask {producer} to release the held report"
    if dec["rule_id"] == "R8-third-party":
        return "withheld", reasons, None
    return "withheld", reasons, f"ask the family for consent to share with {service}"


def child_readiness(store: Store, household_id: str, child_id: str, now: datetime, *, report_days: int = 28,
                    warn_days: int = 7, entries: list[dict[str, Any]] | None = None,
                    decisions: dict[tuple[str, int, str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """One child's readiness; ``entries``: the child's records (``readmodel.child_records``) if already read, and
    ``decisions`` its current share decisions (:func:`_decisions`) if already read."""
    if entries is None:
        entries = readmodel.child_records(store, household_id, child_id)
    appts = upcoming(entries, now)
    infos = [s for s in (shareable_from(e, child_id) for e in entries)
             if s is not None and s.addressed_to is None]  # a referral is for its service, not a report
    if decisions is None:
        decisions = _decisions(store, [child_id], _clinicians(appts))[child_id] if appts else {}
    expected = expected_reports(entries, now, report_days)
    out = []
    for a in appts:
        rk = service_key(a.agency_id, a.service)
        pk = professional_key(a.agency_id, a.service, a.professional_id) if a.professional_id else None
        who = f"{a.professional} ({a.service})" if pk and a.professional else a.service
        items = []
        for s in infos:
            if s.producer_agency_id == a.agency_id and s.producer_service == a.service:
                continue
            dec = _for_clinician(decisions, s.event_id, s.version, rk, pk)
            status, why, step = _report_status(dec, s.producer_service,
                                               who if dec is not None and dec["recipient_key"] == pk else a.service)
            items.append({"event_id": s.event_id, "version": s.version, "record_type": s.record_type,
                          "title": _label(s.record, s.record_type), "producer": s.producer_service,
                          "issued_at": s.info.issued_at.isoformat(), "status": status, "why": why, "unblock": step})
        missing = [x for x in expected if not (x["agency_id"] == a.agency_id and x["service"] == a.service)]
        attention = [i for i in items if i["status"] in ("withheld", "delivery_failed")] + \
                    [m for m in missing if m["overdue"]]
        start = as_utc(a.start)
        out.append({**{k: v for k, v in asdict(a).items() if k != "start"}, "start": start.isoformat(),
                    "days_until": round((start - now).total_seconds() / 86400, 1), "reports": items,
                    "expected": missing, "ready": not attention,
                    "alert_due": bool(attention) and start - now <= timedelta(days=warn_days)})
    return {"child_id": child_id, "appointments": out, "expected_reports": expected}


def readiness(store: Store, household_id: str, now: datetime | None = None, *, report_days: int = 28,
              warn_days: int = 7, records: dict[str, list[dict[str, Any]]] | None = None,
              decisions: dict[str, dict[tuple[str, int, str], dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The household's readiness; ``records``: its children's records (:mod:`hub.stream.household_records`) if
    already read, and ``decisions`` the current share decisions of its children with an appointment coming."""
    now = now or utcnow()
    kids = list(records) if records is not None else readmodel.children(store, household_id)
    return {"household_id": household_id, "generated_at": now.isoformat(),
            "children": [child_readiness(store, household_id, c, now, report_days=report_days, warn_days=warn_days,
                                         entries=records[c] if records is not None else None,
                                         decisions=decisions.get(c, {}) if decisions is not None else None)
                         for c in kids]}


def sweep(store: Store, now: datetime | None = None, *, report_days: int = 28, warn_days: int = 7,
          households: list[str] | None = None, scope: SweepScope | None = None) -> int:
    """Raise readiness alerts and report requests for every (or the given) household, and resolve those whose
    condition cleared; returns how many were raised. With a ``scope`` (and no ``households``), only the
    households it plans (:mod:`hub.sharing.sweep_scope`), and it learns from what they showed."""
    now = now or utcnow()
    plan = None
    if scope is not None and households is None:
        with store.engine.connect() as conn:
            plan = scope.plan(conn, now)
        households = plan.households
    ids = households if households is not None else [h.household_id for h in readmodel.households(store)]
    raised = 0
    looked: list[tuple[str, Looked]] = []
    for i in range(0, len(ids), CHUNK):  # a chunk's records and decisions in a few queries, settled together
        n, seen = sweep_households(store, ids[i:i + CHUNK], now, report_days=report_days, warn_days=warn_days)
        raised += n
        looked += seen
    if scope is not None and plan is not None:
        scope.done(plan, looked)
    return raised


def sweep_households(store: Store, household_ids: list[str], now: datetime, *, report_days: int = 28,
                     warn_days: int = 7) -> tuple[int, list[tuple[str, Looked]]]:
    """The households' sweep, read in a few queries and settled in one transaction: how many alerts it raised,
    and for each household when it next needs a look without a change (an appointment coming within
    ``warn_days``, an expected report falling due). A household is *active*, read every sweep, while an
    appointment is within the warning, a report is overdue or an alert is open: what it shows then follows its
    shares and deliveries, which the change feed does not carry."""
    records = household_records(store, household_ids)
    coming = {c: appts for hh in household_ids for c, entries in records[hh].items()
              if (appts := upcoming(entries, now))}
    decisions = _decisions(store, list(coming), set().union(*map(_clinicians, coming.values())))
    views = [readiness(store, hh, now, report_days=report_days, warn_days=warn_days, records=records[hh],
                       decisions=decisions) for hh in household_ids]
    due = [(view["household_id"], child["child_id"], alert) for view in views for child in view["children"]
           for alert in _due_alerts(view["household_id"], child)]
    raised, still_open = 0, dict.fromkeys(household_ids, 0)
    with store.engine.begin() as conn:
        seal = sealer_of(conn)  # one key lookup a child for everything opened and sealed in this transaction
        have = _held(conn, seal, household_ids, [a["key"] for _h, _c, a in due])
        coordinators: dict[str, tuple[str | None, str | None]] = {}
        for hh, cid, alert in due:
            if alert["key"] in have:
                continue
            if alert["kind"] == "readiness":
                if cid not in coordinators:
                    coordinators[cid] = coordinator_of(conn, cid)
                alert["to_agency_id"], alert["to_service"] = coordinators[cid]
            if raise_alert(conn, household_id=hh, child_id=cid, now=now, seal=seal, **alert):
                raised += 1
                still_open[hh] += 1  # raised because its condition stands: it stays open
        for view in views:
            still_open[view["household_id"]] += _resolve_cleared(conn, view, have, now)
    warn = timedelta(days=warn_days)
    looked = []
    for view in views:
        starts = [datetime.fromisoformat(a["start"]) for c in view["children"] for a in c["appointments"]]
        dues = [datetime.fromisoformat(m["due_at"]) for c in view["children"] for m in c["expected_reports"]
                if not m["overdue"]]
        near = any(s - now <= warn for s in starts)
        overdue = any(m["overdue"] for c in view["children"] for m in c["expected_reports"])
        wake = min([s - warn for s in starts if s - now > warn] + dues, default=None)
        looked.append((view["household_id"],
                       Looked(wake_at=wake, active=near or overdue or still_open[view["household_id"]] > 0)))
    return raised, looked


def _due_alerts(hh: str, child: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerts the child's readiness calls for (``raise_alert``'s arguments but the household, child and
    time): a readiness alert for each appointment due one, a report request for each overdue report."""
    cid = child["child_id"]
    out: list[dict[str, Any]] = []
    for a in child["appointments"]:
        if not a["alert_due"]:
            continue
        withheld = [i for i in a["reports"] if i["status"] in ("withheld", "delivery_failed")]
        overdue = [m for m in a["expected"] if m["overdue"]]
        msg = (f"Before the {a['service']} appointment on {a['start'][:10]}: {len(withheld)} report(s) "
               f"withheld, {len(overdue)} overdue. " +
               "; ".join(x["unblock"] for x in withheld + overdue if x.get("unblock")))
        out.append({"key": f"readiness:{cid}:{a['appointment_id']}:{a['start']}", "kind": "readiness",
                    "to_agency_id": None, "to_service": None, "message": msg,
                    "details": {"appointment_id": a["appointment_id"], "start": a["start"], "service": a["service"],
                                "withheld": withheld, "overdue": overdue}})
    for m in child["expected_reports"]:
        if m["overdue"]:
            out.append({"key": f"report_request:{cid}:{m['trigger_event_id']}", "kind": "report_request",
                        "to_agency_id": m["agency_id"], "to_service": m["service"],
                        "message": f"Report requested from {m['service']}: due {m['due_at'][:10]} after "
                                   f"{m['trigger']} and not yet issued", "details": m})
    return out


def _held(conn: sa.Connection, seal: Sealer, household_ids: list[str], keys: list[str]) -> dict[str, dict[str, Any]]:
    """The alerts a sweep of these households compares with: those with ``keys`` (in any household and state: a
    key is raised once), and the households' readiness alerts and report requests still open, with their details
    opened; by key."""
    cols = (A.alert_id, A.alert_key, A.kind, A.household_id, A.child_id, A.resolved_at, A.details)
    rows: dict[str, Any] = {}
    wanted = sorted(set(keys))
    for i in range(0, len(wanted), KEYS_CHUNK):
        rows.update((r.alert_key, r) for r in conn.execute(
            sa.select(*cols).where(A.alert_key.in_(wanted[i:i + KEYS_CHUNK]))))
    for i in range(0, len(household_ids), KEYS_CHUNK):
        rows.update((r.alert_key, r) for r in conn.execute(sa.select(*cols).where(
            A.household_id.in_(household_ids[i:i + KEYS_CHUNK]), A.kind.in_(KINDS), A.resolved_at.is_(None))))
    seal.prefetch(r.details for r in rows.values() if r.resolved_at is None)
    return {key: {"alert_id": r.alert_id, "alert_key": key, "kind": r.kind, "household_id": r.household_id,
                  "child_id": r.child_id, "resolved_at": r.resolved_at,
                  "details": seal.json(A.details, key, r.details, erased={}) if r.resolved_at is None else {}}
            for key, r in rows.items()}


STATUS_WORDS = {"will_see": "delivered", "on_its_way": "on its way", "unread_in_inbox": UNREAD_IN_INBOX,
                "not_decided": "not decided yet"}


def _readiness_cleared(alert: dict[str, Any], appt: dict[str, Any] | None, now: datetime) -> str | None:
    """Why a readiness alert no longer stands (None: it still does)."""
    d = alert["details"]
    start = d.get("start") or alert["alert_key"].rsplit(f":{d.get('appointment_id')}:", 1)[-1]
    if appt is None:
        if datetime.fromisoformat(start) <= now:
            return f"the appointment on {start[:10]} has passed"
        return f"the appointment on {start[:10]} is no longer booked for that time"
    if not appt["ready"]:
        return None
    now_status = {i["event_id"]: i for i in appt["reports"]}
    was = [f"{w['title']}: {STATUS_WORDS.get(now_status[w['event_id']]['status'], 'no longer withheld')}"
           for w in d.get("withheld", []) if w.get("event_id") in now_status]
    was += [f"the report from {m['service']}: issued" for m in d.get("overdue", [])]
    return (f"nothing is withheld or overdue any more before the {appt['service']} appointment on {start[:10]}"
            + (f" ({'; '.join(was)})" if was else ""))


def _resolve_cleared(conn: sa.Connection, view: dict[str, Any], have: dict[str, dict[str, Any]], now: datetime) -> int:
    """Resolve the household's alerts (as read in ``have``) whose condition cleared; how many stay open."""
    hh = view["household_id"]
    appts = {f"readiness:{c['child_id']}:{a['appointment_id']}:{a['start']}": a
             for c in view["children"] for a in c["appointments"]}
    owed = {f"report_request:{c['child_id']}:{m['trigger_event_id']}" for c in view["children"]
            for m in c["expected_reports"]}
    left = 0
    for alert in sorted((a for a in have.values() if a["household_id"] == hh and a["kind"] in KINDS
                         and a["resolved_at"] is None), key=lambda a: a["alert_id"]):
        key = alert["alert_key"]
        if alert["kind"] == "readiness":
            reason = _readiness_cleared(alert, appts.get(key), now)
        else:
            reason = None if key in owed else f"{alert['details'].get('service')} has issued the report"
        if reason is None or not resolve(conn, key, reason, now):
            left += 1
    return left
