"""The sharing ledger as pure logic: what one child's decisions and deliveries should become.

Nothing here reads or writes storage. Given what is stored for a child (current decisions and the
latest delivery rows, as immutable values: :mod:`.values`), the child's shareable records, their
recipients and a way to ask the consent engine, :func:`plan_child` returns a :class:`Plan` — plain
actions (:mod:`.actions`): record a decision, retire the one it replaces, add a share or a withdrawal
notice in a given round, queue a withheld or cancelled share again, cancel a queued one, re-address a
queued share, recall what a link undone as wrong had shared (:func:`plan_recall`).
:mod:`hub.sharing.apply` is the one place a plan meets the database.
"""

from hub.sharing.ledger.actions import (
    NOTICE,
    NOTICE_KINDS,
    RECALL,
    RECALL_REASON,
    Action,
    AddDelivery,
    Cancel,
    Plan,
    Recall,
    RecordDecision,
    Requeue,
    Rerender,
    RetireDecision,
    Rewithhold,
    why,
)
from hub.sharing.ledger.planner import ChildCase, Decide, plan_child, plan_recall, plan_superseded, service_key_of
from hub.sharing.ledger.values import MAYBE_SENT, DecisionRow, DeliveryKey, DeliveryRow, ItemKey, Ledger

__all__ = [
    "MAYBE_SENT", "NOTICE", "NOTICE_KINDS", "RECALL", "RECALL_REASON", "Action", "AddDelivery", "Cancel", "ChildCase",
    "Decide", "DecisionRow", "DeliveryKey", "DeliveryRow", "ItemKey", "Ledger", "Plan", "Recall", "RecordDecision",
    "Requeue", "Rerender", "RetireDecision", "Rewithhold", "plan_child", "plan_recall", "plan_superseded",
    "service_key_of", "why",
]
