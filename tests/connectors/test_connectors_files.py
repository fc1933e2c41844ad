from __future__ import annotations

from pathlib import Path

from connector_helpers import FIXTURES

from connectors.files import iter_file


def test_directory_walk_yields_per_record_results():
    results = list(iter_file(FIXTURES / "health", "health"))
    sources = {Path(r.source).name for r in results if r.source}
    assert "resources.ndjson" in sources and "bundle-collection-cerys.xml" in sources
    events = [r.event for r in results if r.event is not None]
    assert len(events) >= 20
    ndjson = [r for r in results if r.source and r.source.endswith(".ndjson")]
    assert [r.row for r in ndjson] == [1, 2, 3, 4, 5, 6, 7]
    assert [r.ok for r in ndjson] == [True, True, False, False, True, True, True]


def test_unreadable_file_does_not_stop_the_walk(tmp_path: Path):
    (tmp_path / "a.json").write_text("{broken")
    (tmp_path / "b.csv").write_text((FIXTURES / "education/send-events.csv").read_text())
    (tmp_path / "notes.txt").write_text("ignored")
    results = list(iter_file(tmp_path, "education"))
    assert results[0].row is None and "malformed JSON" in results[0].problems[0].message
    assert sum(1 for r in results if r.event) == 6
    single = list(iter_file(tmp_path / "notes.txt", "education"))
    assert "file type .txt is not read" in single[0].problems[0].message
