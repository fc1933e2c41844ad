"""The plain actions a sharing plan is made of, and the plan itself.

Each action says what should happen to one stored row; :mod:`hub.sharing.apply` turns it into SQL.
Rows an action adds are new; rows an action changes were already stored before the plan was made,
so the order in which a plan's actions are applied does not change the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from consent import Decision, Outcome
from hub.sharing.ledger.values import DeliveryKey, ItemKey
from hub.sharing.model import Shareable, Target, decision_row_id, delivery_row_id

SHARE = "share"
NOTICE = "withdrawal_notice"
RECALL = "recall"
#: deliveries that tell a recipient to stop using a copy
NOTICE_KINDS = (NOTICE, RECALL)
RECALL_REASON = "linked to the wrong child in error"


def why(d: Decision) -> str:
    """Why a share is withheld or cancelled: the outcome, the rule and the engine's reasons."""
    return f"{d.outcome.value} ({d.rule_id}): " + " ".join(d.reasons)


def directive_ids_json(d: Decision) -> str:
    """The directives a decision rests on, as stored (a JSON list)."""
    return json.dumps(list(d.directive_ids))


@dataclass(frozen=True)
class RecordDecision:
    """A new current decision (``seq`` 0 for a first decision, the replaced one's ``seq + 1`` after)."""

    info: Shareable
    target: Target
    decision: Decision
    decided_for: datetime  # the event-time side of decide_strictest
    seq: int

    @property
    def key(self) -> ItemKey:
        return (self.info.event_id, self.info.version, self.target.key)

    @property
    def decision_id(self) -> str:
        return decision_row_id(self.info.event_id, self.info.version, self.target.key, self.seq, self.info.child_id)

    @property
    def directive_ids(self) -> str:
        return directive_ids_json(self.decision)


@dataclass(frozen=True)
class RetireDecision:
    """A current decision replaced by a re-decision (kept for the history, no longer current)."""

    key: ItemKey
    decision_id: str


@dataclass(frozen=True)
class AddDelivery:
    """A new delivery row in round ``round``: a share (queued when permitted, else withheld) or a notice."""

    info: Shareable
    target: Target
    decision: Decision
    decision_id: str
    kind: str  # share | withdrawal_notice
    round: int
    not_for: tuple[str, ...] = ()  # named professionals a service share must not be shown to

    @property
    def key(self) -> ItemKey:
        return (self.info.event_id, self.info.version, self.target.key)

    @property
    def delivery_id(self) -> str:
        return delivery_row_id(self.info.event_id, self.info.version, self.target.key, self.kind, self.round,
                               self.info.child_id)

    @property
    def queued(self) -> bool:
        return self.decision.outcome is Outcome.PERMIT or self.kind == NOTICE

    @property
    def state(self) -> str:
        return "queued" if self.queued else "withheld"


@dataclass(frozen=True)
class Requeue:
    """A withheld or cancelled share queued again under a permitting decision (in ``round``)."""

    info: Shareable
    target: Target
    decision: Decision
    decision_id: str
    delivery_id: str
    round: int
    not_for: tuple[str, ...] = ()

    @property
    def key(self) -> ItemKey:
        return (self.info.event_id, self.info.version, self.target.key)


@dataclass(frozen=True)
class Cancel:
    """A queued delivery that must not go (``decision_id``: the refusing decision, when there is one).

    ``in_doubt``: the share may have been received already (its POST went out and no answer came
    back, :data:`~hub.sharing.ledger.values.MAYBE_SENT`); it is not sent again and is not
    ``cancelled`` but stays ``in_doubt``, and the plan that closes it also adds a withdrawal notice.
    """

    key: DeliveryKey
    delivery_id: str
    why: str
    decision_id: str | None = None
    in_doubt: bool = False


@dataclass(frozen=True)
class Rewithhold:
    """A withheld share that stays withheld, now under a newer refusing decision."""

    key: ItemKey
    delivery_id: str
    why: str
    decision_id: str


@dataclass(frozen=True)
class Rerender:
    """A queued service share whose named-professional exceptions changed: the new list goes instead."""

    info: Shareable
    target: Target
    decision: Decision
    decision_id: str
    delivery_id: str
    not_for: tuple[str, ...]


@dataclass(frozen=True)
class Recall:
    """A copy shared from a link undone as wrong (the record left the child's record, and is still live).

    A ``recall`` delivery (round ``round``) follows the share ``share_id``: to an agency a notice to
    withdraw it (:data:`RECALL_REASON`); for a family copy (``family``) the copy is withdrawn from the
    family's view instead and the share itself becomes ``recalled``.
    """

    key: ItemKey
    child_id: str
    share_id: str
    round: int
    family: bool

    @property
    def delivery_id(self) -> str:
        return delivery_row_id(self.key[0], self.key[1], self.key[2], RECALL, self.round, self.child_id)


Action = RecordDecision | RetireDecision | AddDelivery | Requeue | Cancel | Rewithhold | Rerender | Recall


@dataclass(frozen=True)
class Plan:
    """What one pass does to the ledger, in order; empty when the ledger is up to date."""

    actions: tuple[Action, ...] = ()

    @classmethod
    def of(cls, actions: Iterable[Action]) -> Plan:
        return cls(tuple(actions))

    def __add__(self, other: Plan) -> Plan:
        return Plan(self.actions + other.actions)

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    def __bool__(self) -> bool:
        return bool(self.actions)

    @property
    def decisions(self) -> int:
        return sum(isinstance(a, RecordDecision) for a in self.actions)

    @property
    def queued(self) -> int:
        """Shares queued: new permitted shares and shares queued again."""
        return sum(isinstance(a, Requeue) or (isinstance(a, AddDelivery) and a.kind == SHARE and a.queued)
                   for a in self.actions)

    @property
    def withheld(self) -> int:
        return sum(isinstance(a, AddDelivery) and a.kind == SHARE and not a.queued for a in self.actions)

    @property
    def cancelled(self) -> int:
        return sum(isinstance(a, Cancel) for a in self.actions)

    @property
    def notices(self) -> int:
        return sum(isinstance(a, AddDelivery) and a.kind == NOTICE for a in self.actions)

    @property
    def recalls(self) -> int:
        return sum(isinstance(a, Recall) for a in self.actions)
