"""What is stored for one child, as the ledger sees it: immutable values, no storage types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: (information id, information version, recipient key)
ItemKey = tuple[str, int, str]
#: (information id, information version, recipient key, kind): kind ``share``, ``withdrawal_notice`` or ``recall``
DeliveryKey = tuple[str, int, str, str]


@dataclass(frozen=True)
class DecisionRow:
    """The current decision for one information version and recipient."""

    decision_id: str
    seq: int
    outcome: str
    rule_id: str
    directive_ids: str  # JSON list, as stored
    basis: str
    ruleset_version: str


@dataclass(frozen=True)
class DeliveryRow:
    """The latest round of one kind of delivery for one information version and recipient."""

    delivery_id: str
    state: str  # withheld | queued | sending | in_doubt | delivered | acknowledged | cancelled | failed
    round: int


#: a share whose POST went out and whose outcome is not known (``sending``: a deliverer holds it now;
#: ``in_doubt``: the deliverer died before it learnt the answer): the recipient may have received it
MAYBE_SENT = ("sending", "in_doubt")


def _frozen(value: Mapping[object, object]) -> Mapping[object, object]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class Ledger:
    """One child's stored sharing state: deliveries (latest round of each kind), rounds and current decisions."""

    deliveries: Mapping[DeliveryKey, DeliveryRow] = field(default_factory=dict)
    rounds: Mapping[ItemKey, int] = field(default_factory=dict)  # highest round of either kind
    current: Mapping[ItemKey, DecisionRow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("deliveries", "rounds", "current"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def share(self, key: ItemKey) -> DeliveryRow | None:
        return self.deliveries.get((*key, "share"))

    def notice(self, key: ItemKey) -> DeliveryRow | None:
        return self.deliveries.get((*key, "withdrawal_notice"))

    def recall(self, key: ItemKey) -> DeliveryRow | None:
        return self.deliveries.get((*key, "recall"))

    def usable(self, key: ItemKey) -> bool:
        """The recipient holds a copy — or may hold one (:data:`MAYBE_SENT`) — it has not been told to stop using."""
        share = self.share(key)
        return share is not None and share.state in ("delivered", "acknowledged", *MAYBE_SENT) and \
            all(n is None or n.round < share.round for n in (self.notice(key), self.recall(key)))
