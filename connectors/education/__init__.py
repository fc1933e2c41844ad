"""Education connector: school MIS / SEND team JSON and CSV events (SEN2 fields, UPN subjects).

The knowledge lives in ``connectors/mappings/education/*.json``; a new source system needs only a new
mapping file, passed as ``mapping``.
"""

from __future__ import annotations

from connectors.records import ACCEPTED, SectorConnector

connector = SectorConnector("education", "mis-generic")
SECTOR = connector.sector
DEFAULT_SOURCE = connector.default_source
default_mapping = connector.default_mapping
iter_payload = connector.iter_payload
parse_payload = connector.parse_payload

__all__ = ["ACCEPTED", "DEFAULT_SOURCE", "SECTOR", "connector", "default_mapping", "iter_payload", "parse_payload"]
