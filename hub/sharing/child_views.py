"""What the sharing step keeps of each child between passes: what decides their recipients.

Most of a busy change feed is new entries that share nothing and leave a child's recipients as they were
(a booking with a service already in the team, an attendance, a waiting list): such a child has nothing to
decide (:func:`hub.sharing.settled.settled`), and a new report from a service and author already in the
team is decided for the recipients the child had. Telling so from the child's whole record means reading the
whole record each pass, a cost that grows with the child's history. A :class:`View` keeps, from the last time
the child's whole record was read, only what :func:`hub.sharing.model.targets_for` reads of it: the team
around the child (services, their sector, named professionals and their roles), the service codes, and
whether an EHC needs assessment is open. :func:`keeps_recipients` then says from the new entry alone, and
conservatively, that the recipients are unchanged: its service is already in the team with the same sector,
every professional it names is already named there with the same role, its service code (if any) is the one
in force, it takes no service out of the team, names no change of key professional and opens no EHC needs
assessment. Anything else is read whole, as before.

When a view may be used, and when it is let go:

* A view holds no entry whose change a later pass will judge by it, and is stamped with the feed's ``seq``
  up to which every change is in it (``position``): a change not past ``position`` is never judged by the
  view (the child is read whole again). A pass reads the feed up to some ``seq``, then the children's
  records: a record may hold entries read ahead of the feed (projected in between). Such an entry may have
  brought a service into the team, and its own change is what owes that service the earlier reports, so a
  view holding it would wrongly judge that change as keeping the recipients. The view kept for later passes
  is therefore taken back to the feed as the pass read it
  (:func:`hub.sharing.processor.kept_views`): entries added after that ``seq`` are left out and it is stamped
  with it, so views serve the next pass however far behind the feed the step runs; a child with an entry
  updated or a link joined or left after it keeps no view.
* Any other change to the child (a link joined or left, an entry updated, a consent, an entry that may
  change the recipients) sends the child to a whole read, which builds the view again. A change the sharing
  step skips as irrelevant lets the view go, and so does a pass in which the child failed or lost its links.
* The views are held by the :class:`hub.sharing.record_memo.RecordMemo` and let go with it: when an erasure
  was made, after ``MAX_AGE``, and when the process loses the sharing cursor. At most ``max_children``
  are held, least recently used first out.

Pure: no storage.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hub.core import records
from hub.sharing.model import Target, ehc_open, service_code, service_codes, targets_from
from hub.stream.team import ROLE_KEYS, TeamMember, leaves, service_of

Home = tuple[str, str]  # (household id, child id)


@dataclass(frozen=True)
class View:
    """What decides one child's recipients, from their whole record as read before ``position``."""

    position: int
    members: dict[tuple[str, str], TeamMember]
    codes: dict[tuple[str, str], str]
    ehc_open: bool

    def targets(self, household_id: str, child_id: str) -> list[Target]:
        """The child's recipients (:func:`hub.sharing.model.targets_for` of the record the view was built from)."""
        return targets_from(list(self.members.values()), self.codes, self.ehc_open, household_id, child_id)


def view_of(team: list[TeamMember], entries: list[dict[str, Any]], position: int) -> View:
    """The view of a child whose whole record (``entries``, its team ``team``) was read before ``position``."""
    return View(position, {(m.agency_id, m.service): m for m in team}, service_codes(entries), ehc_open(entries))


def keeps_recipients(view: View, entry: dict[str, Any]) -> bool:
    """Whether adding ``entry`` (anywhere in event time) surely leaves the child's recipients as the view has them.
    False is not a judgment that they change: only that the whole record must be read to tell."""
    r, kind = entry["record"], entry["record_type"]
    if kind == "KeyProfessionalChanged" or (kind == "EhcAssessmentRequested" and not view.ehc_open):
        return False
    svc = r.get("service") or r.get("school")
    if not svc:
        return True  # not in the team, no service code
    key = service_of(r)
    if (code := service_code(r)) is not None and view.codes.get(key) != code:
        return False
    if leaves(kind, r):
        return False
    if kind not in records.catalogue().team_joins:
        return True
    member = view.members.get(key)
    if member is None or member.sector != svc.get("sector", ""):
        return False
    for role_key in ROLE_KEYS:
        p = r.get(role_key)
        if isinstance(p, dict) and p.get("id"):
            if p["id"] not in member.professionals:
                return False
            if p.get("role") and member.roles.get(p["id"]) != str(p["role"]):
                return False
    return True


class ChildViews:
    """Views by child, at most ``max_children`` of them (least recently used go first; 0 keeps none)."""

    def __init__(self, max_children: int) -> None:
        self.max_children = max_children
        self._held: OrderedDict[Home, View] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def get(self, home: Home) -> View | None:
        view = self._held.get(home)
        if view is not None:
            self._held.move_to_end(home)
        return view

    def put(self, home: Home, view: View) -> None:
        if self.max_children <= 0:
            return
        self._held[home] = view
        self._held.move_to_end(home)
        while len(self._held) > self.max_children:
            self._held.popitem(last=False)

    def drop(self, homes: Iterable[Home]) -> None:
        for home in homes:
            self._held.pop(home, None)

    def clear(self) -> None:
        self._held.clear()
