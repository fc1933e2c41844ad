"""Delivery rounds: which delivery row is the latest round of a share."""

from __future__ import annotations

import sqlalchemy as sa

from hub.db.schema import deliveries


def latest_share(decisions: sa.Table) -> sa.ColumnElement[bool]:
    """Join condition: the latest round of the share delivery that follows a ``share_decisions`` row."""
    dl, later = deliveries.c, deliveries.alias("later_round").c
    return sa.and_(
        dl.information_id == decisions.c.information_id, dl.information_version == decisions.c.information_version,
        dl.recipient_key == decisions.c.recipient_key, dl.child_id == decisions.c.child_id, dl.kind == "share",
        ~sa.exists().where(later.information_id == dl.information_id, later.child_id == dl.child_id,
                           later.information_version == dl.information_version,
                           later.recipient_key == dl.recipient_key, later.kind == "share", later.round > dl.round))
