"""Records parsed once per process (``readmodel.parsed_record``): remembered by the stored text itself, so a
new version or a corrected record is parsed afresh, and what a caller adds to a child's record does not reach
the next reader."""

from __future__ import annotations

import json
from datetime import datetime

from hub.stream.readmodel import parse_times, parsed_record


def test_the_same_text_is_parsed_once_and_another_text_afresh() -> None:
    text = json.dumps({"start": "2026-12-07T09:30:00+00:00", "service": {"service_name": "Paediatrics"},
                       "meta": {"source_version": 1}})
    first = parsed_record(text)
    assert first == parse_times(json.loads(text)) and isinstance(first["start"], datetime)
    assert parsed_record(text) is first  # remembered
    newer = text.replace('"source_version": 1', '"source_version": 2').replace("09:30", "10:00")
    again = parsed_record(newer)
    assert again is not first and again["start"].hour == 10 and again["meta"]["source_version"] == 2


def test_a_callers_copy_does_not_change_what_the_next_reader_gets() -> None:
    text = json.dumps({"title": "Speech and language therapy report", "meta": {"source_version": 3}})
    mine = dict(parsed_record(text))  # as child_records hands it out
    mine["title"] = "changed by a caller"
    mine["added"] = True
    assert parsed_record(text) == {"title": "Speech and language therapy report", "meta": {"source_version": 3}}
