"""Local-authority children's social care connector: JSON events and CSV batches (CIN census codes).

The knowledge lives in ``connectors/mappings/social_care/*.json``; a new source system needs only a new
mapping file, passed as ``mapping``.
"""

from __future__ import annotations

from connectors.records import ACCEPTED, SectorConnector

connector = SectorConnector("social_care", "la-generic")
SECTOR = connector.sector
DEFAULT_SOURCE = connector.default_source
default_mapping = connector.default_mapping
iter_payload = connector.iter_payload
parse_payload = connector.parse_payload

__all__ = ["ACCEPTED", "DEFAULT_SOURCE", "SECTOR", "connector", "default_mapping", "iter_payload", "parse_payload"]
