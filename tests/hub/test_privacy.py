"""Pseudonyms and the log redaction processor: no NHS number, UPN or date of birth gets out."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from hub.core.errors import ConfigError
from hub.core.logging import configure_logging, get_logger
from hub.demo.identifiers import nhs_number, upn
from hub.ingest.pseudonym import Pseudonymiser, load_or_create_key


def test_pseudonym_is_stable_keyed_and_reveals_nothing() -> None:
    p = Pseudonymiser(b"k" * 32)
    nhs = nhs_number(7)
    assert p("nhs-number", nhs) == p("nhs-number", f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}")
    assert p("nhs-number", nhs) != p("upn", nhs)
    assert p("nhs-number", nhs) != Pseudonymiser(b"j" * 32)("nhs-number", nhs)
    assert nhs not in p("nhs-number", nhs) and p("nhs-number", nhs).startswith("s-")
    assert "k" * 32 not in repr(p)


def test_key_file_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    key = load_or_create_key("", None, tmp_path)
    path = tmp_path / "keys" / "pseudonym.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key("", None, tmp_path) == key
    with pytest.raises(ConfigError, match="does not exist"):
        load_or_create_key("", tmp_path / "missing.key", tmp_path)
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        Pseudonymiser(b"short")


def test_every_log_line_is_scrubbed_of_identifiers() -> None:
    buf = io.StringIO()
    configure_logging("INFO", "json", stream=buf)
    nhs, pupil = nhs_number(11), upn(11)
    get_logger("t").info("received", detail=f"patient {nhs} pupil {pupil} born 2019-03-04", name="Cerys Evans",
                         nested={"dob": "2019-03-04", "note": f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"})
    logging.getLogger("some.library").warning("bad row for %s", nhs)
    text = buf.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 2
    for forbidden in (nhs, pupil, "2019-03-04", "Cerys", f"{nhs[:3]} {nhs[3:6]}"):
        assert forbidden not in text
    assert lines[0]["name"] == "<redacted>" and "<nhs-number>" in lines[0]["detail"]
    assert lines[1]["event"] == "bad row for <nhs-number>"


def test_event_ids_and_digests_are_not_mistaken_for_identifiers_but_identifiers_beside_them_are() -> None:
    from hub.core.privacy import scrub_text
    from hub.governance.audit import check_detail

    event_id = "3f2b1c9d-4a1b-9c3d-8e7f-a12345678901"  # ten digits in a row in its last group
    digest = "0123456789abcdef" * 4
    assert scrub_text(f"share {event_id} after {digest}") == f"share {event_id} after {digest}"
    check_detail({"information": event_id, "hash": digest})  # an audit record may name the event
    assert scrub_text(f"{event_id} for 943 476 5919 born 2011-09-01") == f"{event_id} for <nhs-number> born <date>"
    assert scrub_text("NHS9434765919") == "NHS<nhs-number>"
    with pytest.raises(ValueError, match="NHS number, UPN or date of birth"):
        check_detail({"information": f"{event_id} 9434765919"})
