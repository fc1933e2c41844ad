"""The read policy applied to what is *about* entries: a caseload's counts and the alerts a coordinator reads.

A count or an alert's words can tell a reader what the timeline hides from them ("3 entries" where
two are shown; "CAMHS has not issued the report"). So a caseload counts, per child, only the entries
the reader's timeline would show (whole or redacted), and its upcoming appointments only those the
reader may see. An alert names the entries it is about (a withheld report, the assessment that
owes a report, the share a delivery or an escalation is about); for each reader:

* an alert about an entry the policy hides from them, or about a child they may not see, is left out;
* an alert about an entry they see redacted keeps its kind, child, service and dates, and loses the
  entry's title (``details withheld``, with the rule that says why);
* a readiness alert lists only the reports and overdue reports the reader may see, its message counted
  again from those; with none left it is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from consent.reading import ReadDecision, Visibility
from hub.db.schema import deliveries
from hub.db.sealed import sealer
from hub.db.store import Store
from hub.sharing import payloads
from hub.sharing.visibility import HELD_KIND, WITHHELD, ReadView
from hub.stream.readmodel import entries_by_id, entry_counts

DL = deliveries.c
#: alert kinds whose details name a delivery (the entry is the delivery's information)
_BY_DELIVERY = ("ack_overdue", "delivery_failed")


def visible_counts(view: ReadView, store: Store, household_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per household, per child: the entries this reader's timeline shows (whole or redacted)."""
    out: dict[str, dict[str, int]] = {}
    for hh, rows in entry_counts(store, household_ids).items():
        seen = set(view.visible_children(hh))
        counts = out.setdefault(hh, {})
        for child, entries in rows.items():
            counts[child] = sum(view.decide(hh, r).visible for r in entries) if child in seen else 0
    return out


def _delivered_information(store: Store, delivery_ids: set[str]) -> dict[str, tuple[str, str]]:
    """Delivery id -> (information id, the information's title as the delivery carried it)."""
    if not delivery_ids:
        return {}
    q = sa.select(DL.delivery_id, DL.information_id, DL.payload).where(DL.delivery_id.in_(sorted(delivery_ids)))
    seal = sealer(store)
    with store.engine.connect() as conn:
        out = {}
        for r in conn.execute(q):
            info = (payloads.body(seal, r.delivery_id, r.payload).get("information") or {}) if r.payload else {}
            out[r.delivery_id] = (r.information_id, str(info.get("title") or r.information_id))
        return out


def _refs(alert: dict[str, Any], delivered: dict[str, tuple[str, str]]) -> list[str]:
    d = alert["details"] if isinstance(alert["details"], dict) else {}
    if alert["kind"] in _BY_DELIVERY:
        found = delivered.get(str(d.get("delivery_id")))
        return [found[0]] if found else []
    if alert["kind"] == "report_request":
        return [str(d["trigger_event_id"])] if d.get("trigger_event_id") else []
    if alert["kind"] == "readiness":
        return ([str(w["event_id"]) for w in d.get("withheld", []) if w.get("event_id")]
                + [str(m["trigger_event_id"]) for m in d.get("overdue", []) if m.get("trigger_event_id")])
    return []


class _Decider:
    def __init__(self, view: ReadView, household_id: str, rows: dict[str, dict[str, Any]]) -> None:
        self.view, self.household_id, self.rows = view, household_id, rows

    def __call__(self, event_id: str) -> ReadDecision | None:
        """The reader's decision on one entry; None where the entry is not (or no longer) this household's."""
        row = self.rows.get(event_id)
        return self.view.decide(self.household_id, row) if row is not None else None


def _readiness(alert: dict[str, Any], decide: _Decider) -> dict[str, Any] | None:
    d = alert["details"]
    withheld, overdue, whole = [], [], True
    for w in d.get("withheld", []):
        dec = decide(str(w.get("event_id")))
        whole = whole and dec is not None and dec.visibility is Visibility.SHOWN
        if dec is None or not dec.visible:
            continue
        if dec.visibility is Visibility.REDACTED:
            held = decide.rows[str(w["event_id"])]["held"]
            w = {**w, "title": WITHHELD, "record_type": HELD_KIND if held else w.get("record_type"),
                 "visibility": "redacted", "reason_code": dec.rule_id}
        withheld.append(w)
    for m in d.get("overdue", []):
        dec = decide(str(m.get("trigger_event_id")))
        whole = whole and dec is not None and dec.visibility is Visibility.SHOWN
        if dec is not None and dec.visible:
            overdue.append(m)
    if whole:
        return alert
    if not withheld and not overdue:
        return None
    when = f"the {d.get('service')} appointment on {str(d.get('start'))[:10]}"
    msg = (f"Before {when}: {len(withheld)} report(s) withheld, {len(overdue)} overdue. "
           + "; ".join(x["unblock"] for x in withheld + overdue if x.get("unblock")))
    resolution = f"nothing is withheld or overdue any more before {when}" if alert.get("resolution") else None
    return {**alert, "message": msg, "resolution": resolution,
            "details": {**d, "withheld": withheld, "overdue": overdue}}


def alerts_for(view: ReadView, store: Store, household_id: str, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The household's alerts as this reader may read them (see the module's docstring)."""
    children = set(view.visible_children(household_id))
    by_delivery = {str(a["details"].get("delivery_id")) for a in alerts
                   if a["kind"] in _BY_DELIVERY and isinstance(a["details"], dict)}
    delivered = _delivered_information(store, by_delivery)
    refs = {a["alert_id"]: _refs(a, delivered) for a in alerts}
    decide = _Decider(view, household_id, entries_by_id(store, household_id, {e for r in refs.values() for e in r}))
    out = []
    for a in alerts:
        if a["child_id"] not in children:
            continue
        if a["kind"] == "readiness":
            shaped = _readiness(a, decide)
            if shaped is not None:
                out.append(shaped)
            continue
        decisions = [decide(e) for e in refs[a["alert_id"]]]
        if any(d is None or not d.visible for d in decisions):
            continue  # about an entry this reader does not see (or that left the record)
        redacted = [d for d in decisions if d is not None and d.visibility is Visibility.REDACTED]
        if redacted and a["kind"] in _BY_DELIVERY:
            title = delivered[str(a["details"]["delivery_id"])][1]
            a = {**a, "message": a["message"].replace(f"'{title}'", f"an item ({WITHHELD})"),
                 "visibility": "redacted", "reason_code": redacted[0].rule_id}
        out.append(a)
    return out
