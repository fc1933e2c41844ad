"""The agency registry: who each agency is and what it may send, configured by an administrator.

``HUB_AGENCIES_FILE`` names a JSON file (or YAML, when PyYAML is installed) with one entry per agency::

    {"agencies": [
      {"id": "7A6", "name": "Aneurin Bevan University Health Board",
       "sectors": ["health"],
       "source_systems": ["abuhb-pas", "abuhb-wcp"],
       "mappings": {"health": "uk-core-fhir"},
       "organisations": ["7A6", "RVF"],
       "records_consent": true}
    ]}

``id``
    The agency: a token's ``agency`` claim (or, without one, its subject) for role ``agency``.
``sectors``
    The ingest routes the agency may use (``health``, ``social_care``, ``education``).
``source_systems``
    The systems the agency sends from. The hub records every event under
    ``<agency id>/<source system>``: the first one for the connector routes, the one named by the
    event for ``POST /v1/events`` (which must be listed). A payload cannot choose another agency's.
``mappings``
    Per sector, the mapping its payloads are read with: a built-in mapping name
    (``connectors/mappings/<sector>/<name>.json``) or a path to a mapping file; default: the
    sector's built-in mapping.
``organisations``
    The organisation codes (ODS, local-authority or school codes) its records may name as the
    producing service (``service.agency_id`` / ``school.agency_id`` as the mapping reads them); a
    FHIR resource's ``meta.source`` must name one of its source systems. Default: its own id.
``records_consent``
    Whether a FHIR Consent it sends may come into force without the family confirming it (see
    :mod:`hub.sharing.recorded_consent`). Default: false.

Without a file every agency token is registered for every sector, with its subject as its source
system and no restriction on the organisations it names (the embedded default and the demo). With
OIDC configured (``HUB_OIDC_ISSUER``, production) there is no such default: an agency missing from the
file, or every agency when there is no file, is refused with a 403 naming ``HUB_AGENCIES_FILE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.mapping import Mapping, builtin_mapping, load_mapping
from connectors.sectors import SECTORS
from hub.core.errors import ConfigError, ForbiddenError
from hub.core.settings import Settings

#: ``source_system`` is stored in 120 characters: agency id, ``/`` and source system must fit.
MAX_SOURCE = 120


@dataclass(frozen=True)
class Registration:
    """One agency's registered identity."""

    agency_id: str
    name: str
    sectors: frozenset[str]
    source_systems: tuple[str, ...]
    organisations: frozenset[str] | None  # None: any (the default registration)
    records_consent: bool = False
    mappings: dict[str, Mapping] = field(default_factory=dict, compare=False, hash=False)
    registered: bool = True  # False: derived from the token because no registry is configured

    @property
    def default_source(self) -> str:
        return self.source_systems[0]

    def source_key(self, system: str) -> str:
        """The source system the hub records this agency's events under."""
        return f"{self.agency_id}/{system}"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.agency_id, "name": self.name, "sectors": sorted(self.sectors),
                "source_systems": list(self.source_systems),
                "mappings": {sector: f"{m.name}@{m.version}" for sector, m in sorted(self.mappings.items())},
                "organisations": sorted(self.organisations) if self.organisations is not None else None,
                "records_consent": self.records_consent}


def _strings(entry: dict[str, Any], key: str, where: str, default: list[str]) -> list[str]:
    value = entry.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key} must be a list of non-empty strings")
    return value


def _mapping(sector: str, spec: object, where: str, base: Path) -> Mapping:
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{where}: mappings.{sector} must be a mapping name or a file path")
    path = Path(spec) if spec.endswith(".json") else None
    if path is not None:
        return load_mapping(path if path.is_absolute() else base / path)
    return builtin_mapping(sector, spec)


def _entry(entry: object, index: int, base: Path) -> Registration:
    where = f"HUB_AGENCIES_FILE agencies[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
        raise ConfigError(f"{where}: each agency needs an id (the token's agency claim)")
    agency = entry["id"]
    sectors = _strings(entry, "sectors", where, [])
    unknown = set(sectors) - set(SECTORS)
    if unknown or not sectors:
        raise ConfigError(f"{where}: sectors must name one or more of {', '.join(SECTORS)}")
    systems = _strings(entry, "source_systems", where, [])
    if not systems:
        raise ConfigError(f"{where}: source_systems must name at least one source system")
    if any(len(f"{agency}/{s}") > MAX_SOURCE for s in systems):
        raise ConfigError(f"{where}: agency id and source system together must fit {MAX_SOURCE} characters")
    mappings = entry.get("mappings", {})
    if not isinstance(mappings, dict) or set(mappings) - set(sectors):
        raise ConfigError(f"{where}: mappings must be an object keyed by the agency's sectors")
    consent = entry.get("records_consent", False)
    if not isinstance(consent, bool):
        raise ConfigError(f"{where}: records_consent must be true or false")
    return Registration(agency, str(entry.get("name") or agency), frozenset(sectors), tuple(systems),
                        frozenset(_strings(entry, "organisations", where, [agency])), consent,
                        {s: _mapping(s, spec, where, base) for s, spec in mappings.items()})


def read_registry_file(path: Path) -> dict[str, Registration]:
    """The registrations in ``path`` by agency id; :class:`ConfigError` naming the rule broken."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"HUB_AGENCIES_FILE {path} cannot be read ({type(exc).__name__})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise ConfigError("HUB_AGENCIES_FILE is YAML but PyYAML is not installed; "
                                  "install it or write the registry as JSON") from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"HUB_AGENCIES_FILE {path} is not valid JSON/YAML ({exc})") from None
    entries = data.get("agencies") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError("HUB_AGENCIES_FILE must hold an object with a list 'agencies'")
    out: dict[str, Registration] = {}
    for i, entry in enumerate(entries):
        reg = _entry(entry, i, path.parent)
        if reg.agency_id in out:
            raise ConfigError(f"HUB_AGENCIES_FILE: agency {reg.agency_id} is registered twice")
        out[reg.agency_id] = reg
    return out


class AgencyRegistry:
    """The registrations, read once from ``HUB_AGENCIES_FILE`` (or the default; see the module docstring)."""

    def __init__(self, registrations: dict[str, Registration] | None, *, closed: bool = False) -> None:
        self.registrations = registrations
        self.closed = closed  # no file and no default (production)

    @classmethod
    def from_settings(cls, settings: Settings) -> AgencyRegistry:
        if settings.agencies_file is not None:
            return cls(read_registry_file(settings.agencies_file))
        return cls(None, closed=bool(settings.oidc_issuer))

    @property
    def configured(self) -> bool:
        return self.registrations is not None

    def registration(self, agency_id: str, subject: str) -> Registration:
        """The agency's registration; 403 for an agency the registry does not know."""
        if self.registrations is None and not self.closed:
            return Registration(agency_id, agency_id, frozenset(SECTORS), (subject,), None, registered=False)
        reg = (self.registrations or {}).get(agency_id)
        if reg is None:
            raise ForbiddenError(f"agency {agency_id} is not registered; ask an administrator to add it "
                                 f"to HUB_AGENCIES_FILE")
        return reg

    def listing(self) -> dict[str, Any]:
        regs = self.registrations
        return {"configured": regs is not None,
                "agencies": [r.as_json() for _, r in sorted((regs or {}).items())]}
