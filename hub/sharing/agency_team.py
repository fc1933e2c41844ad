"""The minimum team view: what an agency in the team around a child may see of the rest of the team.

An agency currently involved with a child (it is in :func:`hub.team.team_around` of the child's
timeline) may learn who else is: each service with its agency, sector and the named professionals
(their role or display name), as the coordinator's team route shows them. Nothing else:

* no timeline entries, dates, record kinds (``how``), report titles or diagnoses;
* nothing derived from a restricted category (the consent rule set's ``restricted_categories``:
  child protection, mental health, sexual health, domestic abuse). A service is listed only if it
  is in the team on the child's unrestricted entries, and its professionals only as those entries
  name them, so a social-care Child Protection allocation does not reveal itself to a school, nor
  does a CAMHS referral, while the same service joining through general work is listed.

An agency whose own involvement is only restricted work still gets the view (its involvement is
no secret to itself) but is not listed in it, nor in anyone else's.

The hub holds no contact details for services or professionals beyond the agency's name; the view
gives the agency and service identifiers its recipients look them up by. An agency not in the team,
and a child that does not exist, give the same answer: ``None`` (404 at the API).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from consent.ruleset import load_ruleset
from hub.db.store import Store
from hub.stream import readmodel
from hub.stream.team import team_around


@dataclass(frozen=True)
class TeamContact:
    agency_id: str
    agency_name: str | None
    sector: str
    service: str
    professionals: dict[str, str]  # id -> role / display name, as the coordinator's team route shows them


@lru_cache(maxsize=1)
def restricted_categories() -> frozenset[str]:
    return frozenset(c.value for c in load_ruleset().restricted_categories)


def minimum_team(entries: list[dict[str, Any]], agency_id: str,
                 restricted: frozenset[str] | None = None) -> list[TeamContact] | None:
    """The team as ``agency_id`` may see it, or None if that agency is not in the team.

    ``entries`` are a child's timeline entries (``readmodel.child_records`` shape, with ``category``).
    """
    restricted = restricted_categories() if restricted is None else restricted
    current = team_around(entries)
    if not any(m.agency_id == agency_id for m in current):
        return None
    in_team = {(m.agency_id, m.service) for m in current}
    open_entries = [e for e in entries if e.get("category") not in restricted]
    names = _agency_names(open_entries)
    return [TeamContact(m.agency_id, names.get(m.agency_id), m.sector, m.service, dict(m.professionals))
            for m in team_around(open_entries) if (m.agency_id, m.service) in in_team]


def _agency_names(entries: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    for e in entries:
        svc = e["record"].get("service") or e["record"].get("school")
        if isinstance(svc, dict) and svc.get("agency_id") and svc.get("agency_name"):
            names[svc["agency_id"]] = svc["agency_name"]
    return names


@dataclass(frozen=True)
class AgencyTeamView:
    household_id: str
    child_id: str
    team: list[TeamContact]


def agency_team_view(store: Store, agency_id: str, child_id: str) -> AgencyTeamView | None:
    """The minimum team view of one child for one agency; None if the agency may not see it."""
    household_id = readmodel.child_household(store, child_id)
    if household_id is None:
        return None
    team = minimum_team(readmodel.child_records(store, household_id, child_id), agency_id)
    return None if team is None else AgencyTeamView(household_id, child_id, team)
