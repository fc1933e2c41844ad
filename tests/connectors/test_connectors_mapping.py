from __future__ import annotations

import json
from pathlib import Path

import pytest
from connector_helpers import avro_validate

from connectors import social_care
from connectors.mapping import MAPPINGS_DIR, builtin_mappings, load_mapping, mapping_from_dict
from connectors.paths import render, resolve
from hub.core.errors import ConfigError


def test_shipped_mappings_load_and_are_checked():
    refs = {m.ref for m in builtin_mappings()}
    assert refs == {"uk-core-fhir@1", "la-generic@2", "mis-generic@3"}


def test_a_new_council_needs_only_a_mapping_file(tmp_path: Path):
    """A council exporting different column names and UK dates: only a mapping file changes."""
    doc = json.loads((MAPPINGS_DIR / "social_care/la-generic.json").read_text())
    doc.update(name="caerphilly-wccis", version=3, source_system="caerphilly-wccis")
    doc["kind"] = {"path": "Activity", "label": "Activity"}
    doc["defaults"]["occurred_at"] = {"path": "When", "type": "datetime", "format": "%d/%m/%Y %H:%M"}
    doc["defaults"]["subject"] = {"path": "Client ID", "system": "la-person-id"}
    doc["defaults"]["source_id"] = {"path": "Ref"}
    for rule in doc["rules"]:
        rule["kind"] = {"short_break": "Respite", "case_closed": "Closure"}.get(rule["kind"], rule["kind"])
    doc["defs"]["service"]["fields"]["agency_id"] = {"const": "W06000018"}
    doc["defs"]["service"]["fields"]["service_name"] = {"const": "Caerphilly Children's Services"}
    path = tmp_path / "caerphilly-wccis.json"
    path.write_text(json.dumps(doc))
    mapping = load_mapping(path)
    csv = (
        "Ref,Activity,When,Client ID,reason_for_closure\n"
        "R1,Respite,02/04/2024 09:00,C-77,\n"
        "R2,Closure,30/09/2024 16:00,C-77,RC8\n"
    )
    result = social_care.parse_payload(csv, "text/csv", mapping)
    assert result.problems == []
    assert [e.body["outcome_kind"] for e in result.events] == ["short_break", "case_closed"]
    assert all(
        e.mapping == "caerphilly-wccis@3" and e.source_system == "caerphilly-wccis" for e in result.events
    )
    assert result.events[0].occurred_at.isoformat() == "2024-04-02T09:00:00+01:00"  # Europe/London, BST
    for event in result.events:
        avro_validate(event)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sector": "police"}, "sector must be one of"),
        ({"rules": [{"kind": "x", "record_type": "NoSuchRecord"}]}, "unknown record type"),
        (
            {"rules": [{"kind": "x", "record_type": "SchoolExclusion", "body": {"colour": "c"}}]},
            "'colour' is not a field",
        ),
        (
            {"rules": [{"kind": "x", "record_type": "SchoolExclusion", "body": {}}]},
            "needs school, exclusion_kind, start_date",
        ),
    ],
)
def test_bad_mapping_files_refused(change, message):
    doc = {
        "name": "t",
        "version": 1,
        "sector": "education",
        "source_system": "t",
        "kind": "event_type",
        "defaults": {"source_id": "id", "occurred_at": "at", "subject": {"path": "upn", "system": "upn"}},
        "rules": [],
        **change,
    }
    with pytest.raises(ConfigError, match=message):
        mapping_from_dict(doc)


def test_paths():
    data = {"identifier": [{"system": "a", "value": "1"}, {"system": "b", "value": "2"}]}
    assert resolve(data, "identifier[system=b].value") == "2"
    assert resolve(data, "identifier.value") == ["1", "2"]
    assert resolve(data, "identifier[5].value") is None
    assert render("identifier[1].value", "pointer") == "/identifier/1/value"
    assert render("start", "fhir", "Bundle.entry[2].resource") == "Bundle.entry[2].resource.start"
