"""The record-type catalogue: what the hub knows about each record type, read from its schema.

Each ``schemas/uk.familyhub.event.<Record>.avsc`` carries, beside its Avro definition, custom
``hub.*`` attributes. Avro ignores them: they are not part of the Parsing Canonical Form, so adding
or changing one changes no fingerprint and no compatibility (a changed attribute does make the
schema differ from its released copy, so ``hub schemas release`` snapshots it, as for a doc change).

``hub.ce_type``
    The CloudEvents type, after ``uk.familyhub.`` (``report.issued``); default: the record name.
``hub.topic`` (required)
    The ingest topic: ``identity``, ``consent``, ``health``, ``social-care`` or ``education``, or
    ``by-sector``: the topic of the sector the record is submitted for.
``hub.shareable``
    The kind of shareable information (the consent ``Information.kind``: ``report``,
    ``assessment``, ``result``, ``plan``, ``referral_outcome``); absent: never shared. The
    ``report`` kind is what a service owes after an assessment or an accepted referral.
``hub.team_join``
    ``true``: a record of this type makes its service and named professionals part of the team
    around the child.
``hub.internal``
    ``true``: a hub-internal record (identity links made by enrolment): created only by the hub's own
    routes, never accepted from an agency (``POST /v1/events`` and the ingest routes refuse it).
``hub.summary``
    A template of the one-line timeline summary; default: the record name.
``hub.label``
    Shareable types: a template of the short title of the information; default: the record name.
``hub.share_fields``
    Shareable types: the fields a share notice carries about the information.
``hub.addressed``
    A record addressed to the service it names (a referral): ``{"when": field, "kind": kind,
    "producer": field, "share_fields": [...]}``. When ``when`` is set, the record is shared as ``kind``
    from the service in ``producer`` to the service in ``service`` alone, under the same consent rules as
    reports (:func:`hub.sharing.model.shareable_from`). Not ``hub.shareable``: nobody else receives it.

Templates are described in :mod:`hub.core.templates`. The schema directory is the ``schemas`` folder
shipped inside the ``hub`` package (:func:`default_schema_dir`); ``HUB_SCHEMA_DIR`` overrides it, for
trying schemas out only; the catalogue
of that directory is read once, on first use (:func:`catalogue`). This module uses the standard
library only, so connectors can use it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from hub.core.errors import ConfigError, UnknownRecordTypeError
from hub.core.templates import Template

EVENT_NAMESPACE = "uk.familyhub.event"
CE_TYPE_PREFIX = "uk.familyhub."
BY_SECTOR = "by-sector"
TOPICS = frozenset({BY_SECTOR, "identity", "consent", "health", "social-care", "education"})
CONSENT_TOPIC = "consent"
REPORT_KIND = "report"



def default_schema_dir() -> Path:
    """The schemas shipped inside the ``hub`` package (``hub/schemas``), found through importlib.resources.

    In a checkout ``hub/schemas`` is a link to the top-level ``schemas/`` folder, the one source; a
    wheel carries the files themselves, so an installed hub finds them from any working directory.
    """
    return Path(str(resources.files("hub").joinpath("schemas")))


def schema_dir() -> Path:
    """``HUB_SCHEMA_DIR`` when set, else :func:`default_schema_dir`."""
    configured = os.environ.get("HUB_SCHEMA_DIR")
    return Path(configured) if configured else default_schema_dir()


def event_schema_files(directory: Path) -> list[Path]:
    """Every record type's current schema file in ``directory``, by name."""
    return sorted(directory.glob(f"{EVENT_NAMESPACE}.*.avsc"))


def record_type_of(path: Path) -> str:
    """``ReportIssued`` for ``…/uk.familyhub.event.ReportIssued.avsc``."""
    return path.name.removesuffix(".avsc").rsplit(".", 1)[1]


def ce_type_of(schema: Mapping[str, Any], record_type: str) -> str:
    """The CloudEvents type of a record type's schema."""
    return CE_TYPE_PREFIX + str(schema.get("hub.ce_type", record_type))


@dataclass(frozen=True)
class RecordType:
    """The facts about one record type (see the module docstring for their source)."""

    name: str
    path: Path
    ce_type: str
    topic: str
    shareable: str | None = None
    team_join: bool = False
    summary: Template | None = None
    label: Template | None = None
    share_fields: tuple[str, ...] = ()
    internal: bool = False
    addressed: Addressed | None = None


@dataclass(frozen=True)
class Addressed:
    """``hub.addressed``: shared to the service the record names, when ``when`` is set."""

    when: str
    kind: str
    producer: str
    share_fields: tuple[str, ...] = ()


def _addressed(schema: Mapping[str, Any]) -> Addressed | None:
    spec = schema.get("hub.addressed")
    if spec is None:
        return None
    fields = {f["name"] for f in schema.get("fields", [])}
    if not isinstance(spec, dict) or set(spec) - {"when", "kind", "producer", "share_fields"}:
        raise ValueError("hub.addressed must be an object of when, kind, producer and share_fields")
    named = [spec.get("when"), spec.get("producer"), *spec.get("share_fields", ())]
    if not all(isinstance(n, str) and n in fields for n in named) or not isinstance(spec.get("kind"), str):
        raise ValueError(f"hub.addressed names fields the record does not have: {named}")
    return Addressed(spec["when"], spec["kind"], spec["producer"], tuple(spec.get("share_fields", ())))


def _template(schema: Mapping[str, Any], key: str) -> Template | None:
    return Template.parse(schema[key]) if key in schema else None


def _read(path: Path) -> RecordType:
    name = record_type_of(path)
    try:
        schema = json.loads(path.read_text())
        topic = schema.get("hub.topic")
        if topic not in TOPICS:
            raise ValueError(f"hub.topic must be one of {sorted(TOPICS)}, not {topic!r}")
        shareable = schema.get("hub.shareable")
        if shareable is not None and not isinstance(shareable, str):
            raise ValueError("hub.shareable must be a string")
        team_join = schema.get("hub.team_join", False)
        if not isinstance(team_join, bool):
            raise ValueError("hub.team_join must be true or false")
        internal = schema.get("hub.internal", False)
        if not isinstance(internal, bool):
            raise ValueError("hub.internal must be true or false")
        share_fields = tuple(schema.get("hub.share_fields", ()))
        unknown = set(share_fields) - {f["name"] for f in schema.get("fields", [])}
        if unknown:
            raise ValueError(f"hub.share_fields names fields the record does not have: {sorted(unknown)}")
        return RecordType(name, path, ce_type_of(schema, name), topic, shareable, team_join,
                          _template(schema, "hub.summary"), _template(schema, "hub.label"), share_fields,
                          internal, _addressed(schema))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"schema file {path.name}: {exc}") from exc


class RecordCatalogue:
    """Every record type of a schema directory, with its facts."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise ConfigError(f"schema directory {directory} does not exist (set HUB_SCHEMA_DIR)")
        self.dir = directory
        self.types: dict[str, RecordType] = {t.name: t for t in map(_read, event_schema_files(directory))}

    def __contains__(self, record_type: object) -> bool:
        return record_type in self.types

    def __iter__(self) -> Iterator[RecordType]:
        return iter(self.types.values())

    def get(self, record_type: str) -> RecordType:
        try:
            return self.types[record_type]
        except KeyError:
            raise UnknownRecordTypeError(f"no schema for record type {record_type!r}") from None

    def on_topic(self, topic: str) -> frozenset[str]:
        return frozenset(t.name for t in self if t.topic == topic)

    @cached_property
    def shareable(self) -> Mapping[str, str]:
        """Shareable record types and the kind of information each is."""
        return {t.name: t.shareable for t in self if t.shareable is not None}

    @cached_property
    def team_joins(self) -> frozenset[str]:
        """Record types that can add a service or a named professional to the team around the child."""
        return frozenset(t.name for t in self if t.team_join)

    @cached_property
    def internal_types(self) -> frozenset[str]:
        """Record types only the hub itself creates (``hub.internal``): never accepted from an agency."""
        return frozenset(t.name for t in self if t.internal)

    @cached_property
    def consent_types(self) -> frozenset[str]:
        """Record types that carry consent directives."""
        return self.on_topic(CONSENT_TOPIC)

    @cached_property
    def report_types(self) -> frozenset[str]:
        """Record types that are reports written by a service."""
        return frozenset(name for name, kind in self.shareable.items() if kind == REPORT_KIND)


@cache
def catalogue() -> RecordCatalogue:
    """The catalogue of the configured schema directory (:func:`schema_dir`), read on first use."""
    return RecordCatalogue(schema_dir())


def get(record_type: str) -> RecordType:
    """The facts about ``record_type``; :class:`UnknownRecordTypeError` for a type without a schema."""
    return catalogue().get(record_type)
