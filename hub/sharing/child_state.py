"""Loading what is stored for the children a sharing pass decides: who they are, their directives, their ledger."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consent import Category, Child, ConsentError, Directive, DirectiveSet, Grantor, Override, OverrideScope
from consent.fhir import from_fhir
from hub.core.logging import get_logger
from hub.db.schema import (
    consent_directives,
    deliveries,
    disclosure_releases,
    household_members,
    safeguarding_overrides,
    share_decisions,
)
from hub.db.sealed import sealer_of
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


@dataclass(frozen=True)
class StoredDirective:
    """A stored directive as :func:`directive_set` reads it, its FHIR Consent opened (it is sealed at rest under
    its subject's key; once that key is shredded it reads ``[erased]`` and is not usable)."""

    child_id: str
    directive_id: str
    fhir_json: str
    status: str
    withdrawn_at: datetime | None


def load_child(conn: Connection, child_id: str) -> Child:
    """The child as the engine needs them: their birth date and recorded competence from enrolment."""
    return load_children(conn, [child_id])[child_id]


def load_children(conn: Connection, child_ids: list[str]) -> dict[str, Child]:
    M = household_members.c
    seal = sealer_of(conn)
    known = {r.member_id: child_for_engine(r.member_id, seal.date(M.date_of_birth, r.member_id, r.date_of_birth),
                                           r.competent_from) for r in conn.execute(
        sa.select(M.member_id, M.date_of_birth, M.competent_from).where(M.member_id.in_(child_ids)))}
    return {c: known.get(c) or child_for_engine(c) for c in child_ids}


#: the consent library needs the justification's text; the hub keeps it sealed in the audit record
SEALED_JUSTIFICATION = "written justification sealed in the override's audit record"


def engine_override(row: Any) -> Override:
    """A stored ``safeguarding_overrides`` row as the consent library's :class:`Override`."""
    cats = json.loads(row.categories) if row.categories else None
    ids = json.loads(row.information_ids) if row.information_ids else None
    scope = OverrideScope(frozenset({row.recipient_agency_id}),
                          None if cats is None else frozenset(Category(c) for c in cats),
                          None if row.recipient_service is None else frozenset({row.recipient_service}),
                          None if ids is None else frozenset(ids))
    return Override(row.override_id, row.child_id, row.made_by, SEALED_JUSTIFICATION, as_utc(row.starts_at),
                    as_utc(row.ends_at), scope)


def directive_set(child: Child, rows: Sequence[Any], override_rows: Sequence[Any] = (),
                  corporate_parent: str | None = None) -> tuple[DirectiveSet, dict[str, Directive]]:
    """The child's usable directives (stored ``consent_directives`` rows) and safeguarding overrides, compiled
    for the engine. A corporate parent's directive counts only when its performer is the local authority
    enrolment records as the child's corporate parent (``corporate_parent``)."""
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
        if d.made_by_role is Grantor.CORPORATE_PARENT and d.made_by != corporate_parent:
            log.info("sharing.not_the_corporate_parent", directive=r.directive_id)
            continue
        found[d.id] = d
    overrides = []
    for o in override_rows:
        try:
            overrides.append(engine_override(o))
        except (ConsentError, ValueError) as exc:
            log.warning("sharing.override_unusable", override=o.override_id, error=str(exc)[:200])
    return engine().compile(child, found.values(), overrides), found


def _load_safeguarding(conn: Connection, chunk: list[str], states: dict[str, ChildState]) -> None:
    """The children's released disclosure holds, safeguarding overrides and corporate parents."""
    R, OV, M = disclosure_releases.c, safeguarding_overrides.c, household_members.c
    for r in conn.execute(sa.select(R.child_id, R.event_id).where(R.child_id.in_(chunk))):
        states[r.child_id].released.add(r.event_id)
    for o in conn.execute(sa.select(safeguarding_overrides).where(OV.child_id.in_(chunk))):
        states[o.child_id].override_rows.append(o)
    for m in conn.execute(sa.select(M.member_id, M.corporate_parent).where(
            M.member_id.in_(chunk), M.corporate_parent.is_not(None))):
        states[m.member_id].corporate_parent = m.corporate_parent


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
    seal = sealer_of(conn)
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
            states[r.child_id].directive_rows.append(StoredDirective(
                r.child_id, r.directive_id, seal.text(CD.fhir_json, r.directive_id, r.fhir_json), r.status,
                r.withdrawn_at))
        _load_safeguarding(conn, chunk, states)
    for c, st in loading.items():
        states[c].ledger = st.ledger()
    return states
