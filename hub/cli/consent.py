"""`hub consent explain DECISION_ID`: why a share was permitted or withheld."""

from __future__ import annotations

import json
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from consent import Basis, Decision, Outcome, explain
from hub.cli.common import console, load_settings, open_store, out
from hub.db.schema import deliveries, share_decisions
from hub.db.store import Store, as_utc

consent_app = typer.Typer(help="Consent decisions: explain why a share was permitted or withheld.",
                          no_args_is_help=True)


def decision_record(store: Store, decision_id: str) -> dict[str, Any] | None:
    sd, dl = share_decisions.c, deliveries.c
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(share_decisions).where(sd.decision_id == decision_id)).first()
        if row is None:
            return None
        d = dict(row._mapping)
        dlv = conn.execute(sa.select(dl.state, dl.why, dl.delivered_at, dl.acknowledged_at).where(
            dl.information_id == row.information_id, dl.information_version == row.information_version,
            dl.recipient_key == row.recipient_key, dl.kind == "share").order_by(dl.round.desc())).first()
    d["delivery"] = dict(dlv._mapping) if dlv else None
    return d


def explain_stored(d: dict[str, Any]) -> str:
    """The consent library's explanation of a stored decision, with what it was about and where it went."""
    decision = Decision(Outcome(d["outcome"]), Basis(d["basis"]), d["rule_id"], d["ruleset_version"],
                        tuple(json.loads(d["reasons"])), tuple(json.loads(d["directive_ids"])),
                        d["notify_family"], d["requires_ig_review"])
    lines = [f"Decision {d['decision_id']} ({'current' if d['current'] else 'superseded'}, re-decision {d['seq']}):",
             f"{d['record_type']} {d['information_id']} v{d['information_version']} ({d['category']}) from "
             f"{d['producer_service']} → {d['recipient_service'] or d['recipient_kind']} "
             f"[{d['recipient_kind']}, purpose {d['purpose']}]",
             f"Decided {as_utc(d['decided_at']):%Y-%m-%d %H:%M} UTC for consent in force at "
             f"{as_utc(d['decided_for']):%Y-%m-%d %H:%M} UTC and then (trigger: {d['trigger']}).",
             explain(decision)]
    dlv = d.get("delivery")
    if dlv:
        state = dlv["state"] + (f" — {dlv['why']}" if dlv.get("why") and dlv["state"] != "withheld" else "")
        lines.append(f"Delivery: {state}.")
    return "\n".join(lines)


@consent_app.command("explain")
def explain_cmd(decision_id: Annotated[str, typer.Argument(help="A share decision id.")]) -> None:
    """Print why a share was permitted or withheld."""
    store = open_store(load_settings())
    d = decision_record(store, decision_id)
    if d is None:
        console.print(f"no decision {decision_id}")
        raise typer.Exit(1)
    out.print(explain_stored(d), highlight=False, soft_wrap=True)
