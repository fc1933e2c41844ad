"""Loading what is stored for the children a sharing pass decides: who they are, their directives, their ledger."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consent import Child, ConsentError, Directive, DirectiveSet, Grantor
from consent.fhir import from_fhir
from hub.core.logging import get_logger
from hub.db.schema import consent_directives, deliveries, household_members, share_decisions
from hub.db.store import as_utc
from hub.sharing.decisions import ChildState, engine
from hub.sharing.ledger import DecisionRow, DeliveryKey, DeliveryRow, ItemKey, Ledger
from hub.sharing.model import child_for_engine

log = get_logger(__name__)
CD = consent_directives.c
SD = share_decisions.c
DL = deliveries.c


def _aware(value: Any) -> datetime | None:
    return None if value is None else as_utc(value)


@lru_cache(maxsize=10000)
def _parsed(fhir_json: str, child_id: str) -> Directive:
    d = from_fhir(json.loads(fhir_json))
    made_by = child_id if d.made_by_role is Grantor.YOUNG_PERSON else d.made_by
    return replace(d, child_id=child_id, made_by=made_by)


def parse_directive(fhir_json: str, child_id: str, withdrawn_at: datetime | None) -> Directive:
    """A stored FHIR Consent as a directive of the hub child (its patient reference re-pointed there)."""
    d = _parsed(fhir_json, child_id)
    if withdrawn_at is not None:
        d = replace(d, withdrawn_at=max(withdrawn_at, d.made_at))
    return d


def load_child(conn: Connection, child_id: str) -> Child:
    """The child as the engine needs them: their birth date and recorded competence from enrolment."""
    return load_children(conn, [child_id])[child_id]


def load_children(conn: Connection, child_ids: list[str]) -> dict[str, Child]:
    M = household_members.c
    known = {r.member_id: child_for_engine(r.member_id, r.date_of_birth, r.competent_from) for r in conn.execute(
        sa.select(M.member_id, M.date_of_birth, M.competent_from).where(M.member_id.in_(child_ids)))}
    return {c: known.get(c) or child_for_engine(c) for c in child_ids}


def directive_set(child: Child, rows: Sequence[Any]) -> tuple[DirectiveSet, dict[str, Directive]]:
    """The child's usable directives (stored ``consent_directives`` rows), compiled for the engine."""
    found: dict[str, Directive] = {}
    for r in rows:
        try:
            d = parse_directive(r.fhir_json, child.id, _aware(r.withdrawn_at))
        except (ConsentError, ValueError) as exc:
            log.warning("sharing.directive_unusable", directive=r.directive_id, error=str(exc)[:200])
            continue
        if d.made_by_role is Grantor.YOUNG_PERSON and not child.young_person_controls(d.made_at):
            log.info("sharing.young_person_directive_not_in_force", directive=r.directive_id)
            continue  # made before 16 without recorded competence: not theirs to make yet
        found[d.id] = d
    return engine().compile(child, found.values()), found


class _Loading:
    """One child's ledger as its rows are read (latest round of each kind last)."""

    def __init__(self) -> None:
        self.deliveries: dict[DeliveryKey, DeliveryRow] = {}
        self.rounds: dict[ItemKey, int] = {}
        self.current: dict[ItemKey, DecisionRow] = {}

    def ledger(self) -> Ledger:
        return Ledger(self.deliveries, self.rounds, self.current)


def load_states(conn: Connection, child_ids: list[str], only: set[str] | None = None) -> dict[str, ChildState]:
    """The children's deliveries, current decisions and directives, in four queries.

    ``only``: load deliveries and decisions of these information ids alone (the children's new
    records, when nothing else of theirs needs deciding).
    """
    states = {c: ChildState() for c in child_ids}
    loading = {c: _Loading() for c in child_ids}
    info_ids = sorted(only) if only is not None else None
    for i in range(0, len(child_ids), 300):
        chunk = child_ids[i:i + 300]
        for c, child in load_children(conn, chunk).items():
            states[c].child = child
        dl_where = [DL.child_id.in_(chunk)]
        sd_where = [SD.child_id.in_(chunk), SD.current.is_(True)]
        if info_ids is not None:
            dl_where.append(DL.information_id.in_(info_ids))
            sd_where.append(SD.information_id.in_(info_ids))
        for d in conn.execute(sa.select(DL.child_id, DL.information_id, DL.information_version, DL.recipient_key,
                                        DL.kind, DL.state, DL.delivery_id, DL.round).where(
                *dl_where).order_by(DL.round)):
            st = loading[d.child_id]
            key: ItemKey = (d.information_id, d.information_version, d.recipient_key)
            st.deliveries[(*key, d.kind)] = DeliveryRow(d.delivery_id, d.state, d.round)  # latest round
            st.rounds[key] = d.round
        for dec in conn.execute(sa.select(SD.child_id, SD.information_id, SD.information_version, SD.recipient_key,
                                          SD.decision_id, SD.seq, SD.outcome, SD.rule_id, SD.directive_ids,
                                          SD.basis, SD.ruleset_version).where(*sd_where)):
            loading[dec.child_id].current[(dec.information_id, dec.information_version, dec.recipient_key)] = \
                DecisionRow(dec.decision_id, dec.seq, dec.outcome, dec.rule_id, dec.directive_ids, dec.basis,
                            dec.ruleset_version)
        for r in conn.execute(sa.select(CD.child_id, CD.directive_id, CD.fhir_json, CD.status, CD.withdrawn_at).where(
                CD.child_id.in_(chunk), CD.status.in_(("active", "withdrawn")), CD.fhir_json.is_not(None))):
            states[r.child_id].directive_rows.append(r)
    for c, st in loading.items():
        states[c].ledger = st.ledger()
    return states
