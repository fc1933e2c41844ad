"""The hash-chained audit log: recording, tamper detection (by direct SQL), IG queries, exports, CLI."""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner

from hub.core.errors import AuditIntegrityError, NotFoundError, ValidationError
from hub.db.schema import audit_log
from hub.db.store import Store, utcnow
from hub.demo.identifiers import nhs_number, upn
from hub.governance.audit import (
    ACTIONS,
    GENESIS,
    AuditEntry,
    AuditLog,
    compute_hash,
    register_action,
)
from hub.governance.audit_queries import (
    consent_history,
    overrides,
    review_override,
    who_has_seen,
    withheld,
)
from hub.governance.export import CSV_COLUMNS, export_csv, fhir_audit_event, fhir_bundle

HASHED = ("recorded_at", "actor", "actor_role", "action", "subject_household", "subject_child", "data_ref",
          "purpose", "legal_basis", "detail", "source")
ALL_BUT_SEQ = (*HASHED, "prev_hash", "hash")


@pytest.fixture
def log(db_url: str) -> AuditLog:
    return AuditLog(Store.open(db_url), anchor_every=0)


def seed(log: AuditLog, n: int = 10) -> None:
    actions = ["share", "read_timeline", "withhold", "consent_change", "read_report"]
    for i in range(n):
        log.record(actions[i % len(actions)], actor=f"user-{i % 3}", actor_role="coordinator",
                   subject_household=f"h-{i % 2}", subject_child=f"c-{i % 4}", data_ref=f"evt-{i}",
                   purpose="direct_care", legal_basis="UK GDPR 6(1)(e), 9(2)(h)", detail={"i": i},
                   source="10.0.0.1")


def sql(log: AuditLog, statement: str, **params: Any) -> None:
    with log.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def row(log: AuditLog, seq: int) -> dict[str, Any]:
    with log.engine.connect() as conn:
        return dict(conn.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).one()._mapping)


def set_columns(log: AuditLog, seq: int, values: dict[str, Any]) -> None:
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    sql(log, f"update audit_log set {assignments} where seq = :seq", seq=seq, **values)


def found(log: AuditLog) -> set[tuple[int, str]]:
    return log.verify().kinds()


# ---- recording and a clean chain ----------------------------------------------------------------------
def test_records_chain_from_genesis_and_verify_clean(log: AuditLog) -> None:
    first = log.record("share", actor="coord-1", subject_household="h-1", subject_child="c-1", data_ref="r-1",
                       purpose="direct_care", detail={"recipient": "school-a"})
    assert first.seq == 1 and first.prev_hash == GENESIS and len(first.hash) == 64
    batch = log.record_many([AuditEntry(action="read_timeline", actor="coord-2", subject_household="h-1"),
                             {"action": "withhold", "actor": "rules", "detail": {"reason": "no consent"}}])
    assert [r.seq for r in batch] == [2, 3]
    assert batch[0].prev_hash == first.hash and batch[1].prev_hash == batch[0].hash
    stored = log.get(2)
    assert stored == batch[0]
    assert compute_hash({k: getattr(stored, k) if k != "detail" else row(log, 2)["detail"] for k in HASHED},
                        stored.prev_hash) == stored.hash
    report = log.verify()
    assert report.ok and report.records == 3 and report.last_seq == 3 and report.last_hash == batch[1].hash
    assert str(report) == "audit log intact: 3 records"
    assert log.records(household="h-1", actions=["share"]) == [first]
    with pytest.raises(NotFoundError):
        log.get(99)


def test_empty_log_verifies(log: AuditLog) -> None:
    assert log.verify().ok and log.verify().records == 0 and log.anchor() is None


def test_unknown_action_refused_until_registered(log: AuditLog) -> None:
    with pytest.raises(ValueError, match="unknown audit action"):
        log.record("teleport", actor="x")
    register_action("data_subject_request", "a family asked for a copy of their data")
    try:
        assert log.record("data_subject_request", actor="ig-1").seq == 1
    finally:
        ACTIONS.pop("data_subject_request")
    with pytest.raises(ValueError):
        register_action("Bad Name", "x")
    with pytest.raises(ValueError, match="actor"):
        log.record("share", actor="")


def test_detail_with_personal_identifiers_is_refused(log: AuditLog) -> None:
    nhs = nhs_number(1)
    for detail in ({"note": f"child {nhs}"}, {"nested": {"ids": ["ok", f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"]}},
                   {"ref": upn(3)}, {"nhs_number": "redacted"}, {"dob": "x"}, {"born": "2015-03-04"}):
        with pytest.raises(ValueError, match="personal") as info:
            log.record("share", actor="coord-1", detail=detail)
        assert nhs not in str(info.value)
    # the trail's batch writer never stops on a bad record: it is dead-lettered, the others are written
    written = log.record_many([AuditEntry("share", "a"), AuditEntry("share", "b", detail={"x": nhs})])
    assert [r.actor for r in written] == ["a"] and log.count() == 1 and log.dead_letter_count() == 1
    ok = log.record("share", actor="coord-1", detail={"at": "2026-01-02T10:00:00Z", "recipient": "s-abc"})
    assert ok.detail["recipient"] == "s-abc"


def test_concurrent_writers_produce_one_valid_chain(log: AuditLog) -> None:
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(50):
                log.record("read_timeline", actor=f"thread-{t}", subject_household="h-1", data_ref=f"{t}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    report = log.verify()
    assert report.ok, str(report)
    assert report.records == 200 and report.last_seq == 200
    records = log.records()
    assert [r.seq for r in records] == list(range(1, 201))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert all(b.recorded_at >= a.recorded_at for a, b in itertools.pairwise(records))


# ---- tampering, done directly in the database --------------------------------------------------------
def test_edited_column_is_altered(log: AuditLog) -> None:
    seed(log)
    sql(log, "update audit_log set actor = 'mallory' where seq = 5")
    assert found(log) == {(5, "ALTERED")}
    with pytest.raises(AuditIntegrityError, match="seq 5: ALTERED"):
        log.verify_or_raise()


def test_edited_detail_and_edited_hash_column_are_altered(log: AuditLog) -> None:
    seed(log)
    sql(log, "update audit_log set detail = :d where seq = 2", d='{"i":99}')
    sql(log, "update audit_log set hash = :h where seq = 7", h="f" * 64)
    report = log.verify()
    assert report.kinds() == {(2, "ALTERED"), (7, "ALTERED")}
    assert "seq 2: ALTERED:" in str(report)


def test_deleted_row_is_named_by_its_seq(log: AuditLog) -> None:
    seed(log)
    sql(log, "delete from audit_log where seq = 4")
    assert found(log) == {(4, "DELETED")}
    sql(log, "delete from audit_log where seq in (1, 8, 9)")
    assert found(log) == {(1, "DELETED"), (4, "DELETED"), (8, "DELETED"), (9, "DELETED")}


def test_deleted_row_with_later_seqs_renumbered_is_deleted(log: AuditLog) -> None:
    seed(log)
    sql(log, "delete from audit_log where seq = 4")
    for seq in range(5, 11):
        sql(log, "update audit_log set seq = :n where seq = :o", n=seq - 1, o=seq)
    assert found(log) == {(4, "DELETED")}


def test_swapped_rows_are_reordered(log: AuditLog) -> None:
    seed(log)
    a, b = row(log, 3), row(log, 7)
    set_columns(log, 3, {k: b[k] for k in ALL_BUT_SEQ})
    set_columns(log, 7, {k: a[k] for k in ALL_BUT_SEQ})
    assert found(log) == {(3, "REORDERED"), (7, "REORDERED")}


def test_adjacent_swap_is_reordered(log: AuditLog) -> None:
    seed(log)
    a, b = row(log, 4), row(log, 5)
    set_columns(log, 4, {k: b[k] for k in ALL_BUT_SEQ})
    set_columns(log, 5, {k: a[k] for k in ALL_BUT_SEQ})
    assert found(log) == {(4, "REORDERED"), (5, "REORDERED")}


def test_swapped_data_columns_keeping_the_links_are_reordered(log: AuditLog) -> None:
    seed(log)
    a, b = row(log, 2), row(log, 6)
    set_columns(log, 2, {k: b[k] for k in HASHED})
    set_columns(log, 6, {k: a[k] for k in HASHED})
    report = log.verify()
    assert report.kinds() == {(2, "REORDERED"), (6, "REORDERED")}
    assert "belongs at seq 6" in str(report)


def _rehash_from(log: AuditLog, start: int) -> None:
    """What an attacker who knows the algorithm does: recompute every hash from ``start`` on."""
    prev = row(log, start - 1)["hash"] if start > 1 else GENESIS
    with log.engine.connect() as conn:
        last = conn.execute(sa.text("select max(seq) from audit_log")).scalar_one()
    for seq in range(start, last + 1):
        r = row(log, seq)
        h = compute_hash({k: r[k] for k in HASHED}, prev)
        set_columns(log, seq, {"prev_hash": prev, "hash": h})
        prev = h


def test_swap_with_the_chain_rehashed_is_reordered_by_recorded_at(log: AuditLog) -> None:
    seed(log)
    a, b = row(log, 3), row(log, 8)
    set_columns(log, 3, {k: b[k] for k in HASHED})
    set_columns(log, 8, {k: a[k] for k in HASHED})
    _rehash_from(log, 3)
    assert found(log) == {(3, "REORDERED"), (8, "REORDERED")}


def test_forged_row_linking_into_the_middle_is_inserted(log: AuditLog) -> None:
    seed(log)
    base = row(log, 3)
    forged = {**{k: base[k] for k in HASHED}, "actor": "mallory", "recorded_at": utcnow()}
    forged["detail"] = '{"i":3}'
    forged_hash = compute_hash(forged, base["hash"])
    sql(log, "insert into audit_log (seq, recorded_at, actor, actor_role, action, subject_household, subject_child,"
             " data_ref, purpose, legal_basis, detail, source, prev_hash, hash) values (11, :recorded_at, :actor,"
             " :actor_role, :action, :subject_household, :subject_child, :data_ref, :purpose, :legal_basis,"
             " :detail, :source, :prev_hash, :hash)", **forged, prev_hash=base["hash"], hash=forged_hash)
    report = log.verify()
    assert report.kinds() == {(11, "INSERTED")}
    assert "links to seq 3, which already has a successor (seq 4)" in str(report)


def test_forged_copy_without_a_recomputed_hash_is_inserted(log: AuditLog) -> None:
    seed(log)
    sql(log, "insert into audit_log (seq, recorded_at, actor, actor_role, action, subject_household, subject_child,"
             " data_ref, purpose, legal_basis, detail, source, prev_hash, hash) select 11, recorded_at, 'mallory',"
             " actor_role, action, subject_household, subject_child, data_ref, purpose, legal_basis, detail, source,"
             " prev_hash, hash from audit_log where seq = 6")
    assert found(log) == {(11, "INSERTED")}


def test_forged_row_with_made_up_links_is_inserted(log: AuditLog) -> None:
    seed(log, 5)
    sql(log, "insert into audit_log (seq, recorded_at, actor, actor_role, action, detail, prev_hash, hash) values "
             "(6, :at, 'mallory', 'admin', 'share', '{}', :p, :h)", at=utcnow(), p="a" * 64, h="b" * 64)
    assert found(log) == {(6, "INSERTED")}


def test_row_spliced_in_between_is_inserted(log: AuditLog) -> None:
    seed(log)
    for seq in range(10, 5, -1):  # make room after seq 5
        sql(log, "update audit_log set seq = :n where seq = :o", n=seq + 1, o=seq)
    base = row(log, 5)
    forged = {**{k: base[k] for k in HASHED}, "actor": "mallory", "action": "share", "recorded_at": base["recorded_at"]}
    forged_hash = compute_hash(forged, base["hash"])
    sql(log, "insert into audit_log (seq, recorded_at, actor, actor_role, action, subject_household, subject_child,"
             " data_ref, purpose, legal_basis, detail, source, prev_hash, hash) values (6, :recorded_at, :actor,"
             " :actor_role, :action, :subject_household, :subject_child, :data_ref, :purpose, :legal_basis,"
             " :detail, :source, :prev_hash, :hash)", **forged, prev_hash=base["hash"], hash=forged_hash)
    sql(log, "update audit_log set prev_hash = :h where seq = 7", h=forged_hash)
    report = log.verify()
    assert report.kinds() == {(6, "INSERTED")}, str(report)


def test_truncated_tail_is_caught_by_the_anchor(log: AuditLog) -> None:
    seed(log)
    anchor = log.anchor()
    assert anchor is not None and anchor.seq == 10 and anchor.hash == row(log, 10)["hash"]
    assert log.verify().ok and log.verify().anchors_checked == 1
    sql(log, "delete from audit_log where seq >= 9")
    report = log.verify()
    assert report.kinds() == {(9, "DELETED"), (10, "DELETED")}
    assert "truncated after seq 8" in str(report)


def test_truncation_without_an_anchor_is_not_detectable(log: AuditLog) -> None:
    seed(log)
    sql(log, "delete from audit_log where seq >= 9")
    assert log.verify().ok  # the documented limit: anchor often, and off the database


def test_automatic_anchors_and_a_rewritten_chain(db_url: str) -> None:
    shipped: list[Any] = []
    log = AuditLog(Store.open(db_url), anchor_every=4, anchor_sink=shipped.append)
    seed(log, 10)
    assert [a.seq for a in log.anchors()] == [4, 8] and [a.seq for a in shipped] == [4, 8]
    sql(log, "update audit_log set actor = 'mallory' where seq = 6")
    _rehash_from(log, 6)  # internally consistent again, but the anchor at 8 remembers
    assert found(log) == {(8, "ALTERED")}
    # an anchor kept off the database works the same way
    sql(log, "delete from audit_anchors")
    assert found(log) == set()
    assert log.verify(extra_anchors=shipped).kinds() == {(8, "ALTERED")}


# ---- IG queries -------------------------------------------------------------------------------------
def ig_scenario(log: AuditLog) -> dict[str, int]:
    common = {"subject_household": "h-1", "purpose": "direct_care", "legal_basis": "UK GDPR 6(1)(e), 9(2)(h)"}
    log.record("consent_change", actor="parent-portal", actor_role="system", subject_child="c-1",
               data_ref="consent-1", detail={"scope": "education", "granted": True}, **common)
    log.record("share", actor="school-a", actor_role="agency", subject_child="c-1", data_ref="report-1",
               detail={"channel": "api"}, source="192.0.2.5", **common)
    log.record("share", actor="school-a", actor_role="agency", subject_child="c-1", data_ref="report-2", **common)
    log.record("read_timeline", actor="coord-1", actor_role="coordinator", subject_child="c-1", **common)
    log.record("read_report", actor="coord-1", actor_role="coordinator", subject_child="c-2", data_ref="report-1",
               **common)
    log.record("withhold", actor="rules", actor_role="system", subject_child="c-1", data_ref="evt-9",
               detail={"reason": "no consent for health to education", "rule": "C-7"}, **common)
    log.record("hold", actor="rules", actor_role="system", subject_child="c-2", data_ref="evt-10",
               detail={"reason": "awaiting consent"}, **common)
    o1 = log.record("override", actor="sw-1", actor_role="social_worker", subject_child="c-1", data_ref="evt-9",
                    purpose="safeguarding", legal_basis="Children Act 1989 s47", subject_household="h-1",
                    detail={"reason": "risk of significant harm"})
    o2 = log.record("override", actor="sw-2", actor_role="social_worker", subject_child="c-2", data_ref="evt-10",
                    purpose="safeguarding", legal_basis="Children Act 1989 s47", subject_household="h-1")
    log.record("consent_change", actor="parent-portal", actor_role="system", subject_child="c-1",
               data_ref="consent-1", detail={"scope": "education", "granted": False}, **common)
    # another family, which must not show up in h-1's answers
    log.record("share", actor="gp-9", actor_role="agency", subject_household="h-2", subject_child="c-9",
               data_ref="report-9")
    log.record("withhold", actor="rules", subject_household="h-2", detail={"reason": "sensitive category"})
    return {"o1": o1.seq, "o2": o2.seq}


def test_who_has_seen_a_family(log: AuditLog) -> None:
    ig_scenario(log)
    seen = {a.actor: a for a in who_has_seen(log, "h-1")}
    assert set(seen) == {"school-a", "coord-1"}
    assert seen["school-a"].actions == {"share": 2} and seen["school-a"].data_refs == ["report-1", "report-2"]
    assert seen["coord-1"].actions == {"read_report": 1, "read_timeline": 1}
    assert seen["coord-1"].actor_role == "coordinator" and seen["coord-1"].first_at <= seen["coord-1"].last_at
    assert [a.actor for a in who_has_seen(log.store, "h-2")] == ["gp-9"]
    assert who_has_seen(log, "h-none") == []


def test_what_was_withheld_and_why(log: AuditLog) -> None:
    ig_scenario(log)
    mine = withheld(log, "h-1")
    assert [(r.action, r.data_ref, r.detail["reason"]) for r in mine] == [
        ("withhold", "evt-9", "no consent for health to education"), ("hold", "evt-10", "awaiting consent")]
    assert len(withheld(log)) == 3


def test_overrides_awaiting_and_reviewed(log: AuditLog) -> None:
    seqs = ig_scenario(log)
    assert [s.override.seq for s in overrides(log, awaiting_only=True)] == [seqs["o1"], seqs["o2"]]
    with pytest.raises(ValidationError, match="someone other"):
        review_override(log, seqs["o1"], "sw-1", "justified")
    review = review_override(log, seqs["o1"], "ig-1", "justified", note="threshold met")
    assert review.action == "override_review" and review.data_ref == f"audit:{seqs['o1']}"
    assert review.subject_household == "h-1" and review.detail["outcome"] == "justified"
    with pytest.raises(ValidationError, match="already been reviewed"):
        review_override(log, seqs["o1"], "ig-2", "justified")
    with pytest.raises(ValidationError, match="not an override"):
        review_override(log, 1, "ig-1", "justified")
    with pytest.raises(NotFoundError):
        review_override(log, 999, "ig-1", "justified")
    statuses = overrides(log)
    assert [(s.override.seq, s.awaiting_review) for s in statuses] == [(seqs["o1"], False), (seqs["o2"], True)]
    assert statuses[0].review == review
    assert [s.override.seq for s in overrides(log, awaiting_only=True)] == [seqs["o2"]]
    now = utcnow()
    assert overrides(log, since=now + timedelta(hours=1)) == []
    assert len(overrides(log, since=now - timedelta(hours=1), until=now + timedelta(hours=1))) == 2
    assert log.verify().ok


def test_consent_history(log: AuditLog) -> None:
    ig_scenario(log)
    history = consent_history(log, "h-1")
    assert [r.detail["granted"] for r in history] == [True, False]
    assert consent_history(log, "h-2") == []


# ---- exports ----------------------------------------------------------------------------------------
def test_fhir_audit_events_validate_and_round_trip(log: AuditLog) -> None:
    ig_scenario(log)
    records = log.records()
    for r in records:
        event = AuditEvent.model_validate(fhir_audit_event(r))
        assert event.agent[0].who.identifier.value == r.actor and event.agent[0].requestor is True
        assert event.source.observer.display == "family-hub"
        assert event.outcome == ("4" if r.action == "login_denied" else "0")
        assert event.recorded == r.recorded_at
        assert event.entity[0].what.identifier.value == r.data_ref or f"audit:{r.seq}"
        if r.subject_child:
            patient = event.entity[1]
            assert patient.role.code == "1" and patient.role.display == "Patient"
            assert patient.what.identifier.value == r.subject_child
            assert patient.what.reference == f"Patient/{r.subject_child}"
        if r.purpose:
            assert event.purposeOfEvent[0].text == r.purpose
    share = AuditEvent.model_validate(fhir_audit_event(records[1]))
    assert (share.type.system, share.type.code, share.type.display) == (
        "http://dicom.nema.org/resources/ontology/DCM", "110106", "Export")
    assert share.agent[0].network.address == "192.0.2.5" and share.agent[0].network.type == "2"
    assert share.purposeOfEvent[0].coding[0].code == "TREAT"
    read = AuditEvent.model_validate(fhir_audit_event(records[3]))
    assert (read.type.code, read.action) == ("rest", "E")  # BALP: a search is an Execute
    assert read.subtype[0].system == "http://hl7.org/fhir/restful-interaction" and read.subtype[0].code == "search"
    report = AuditEvent.model_validate(fhir_audit_event(records[4]))
    assert report.subtype[0].code == "read"
    details = {d.type: d.valueString for d in share.entity[0].detail}
    assert details["audit-seq"] == "2" and details["audit-hash"] == records[1].hash
    bundle = Bundle.model_validate(fhir_bundle(records))
    assert len(bundle.entry) == len(records)


#: What the IHE BALP profiles (ITI Basic Audit Log Patterns, R4) require of an AuditEvent, by profile:
#: the restful subtype, the action, the data entity's role, a query element, and a patient entity.
BALP_REQUIRED = {
    "IHE.BasicAudit.PatientRead": ("read", "R", "4", False, True),
    "IHE.BasicAudit.PatientQuery": ("search", "E", "24", True, True),
    "IHE.BasicAudit.PatientUpdate": ("update", "U", "4", False, True),
    "IHE.BasicAudit.Read": ("read", "R", "4", False, False),
    "IHE.BasicAudit.Query": ("search", "E", "24", True, False),
}


def balp_problems(event: dict) -> list[str]:
    """The BALP required elements an exported AuditEvent lacks (empty when it meets its profile)."""
    (profile,) = event["meta"]["profile"]
    name = profile.removeprefix("https://profiles.ihe.net/ITI/BALP/StructureDefinition/")
    subtype, action, data_role, query, patient = BALP_REQUIRED[name]
    out = []
    if event["type"] != {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                         "display": "Restful Operation"}:
        out.append("type must be audit-event-type#rest")
    restful = {"system": "http://hl7.org/fhir/restful-interaction", "code": subtype, "display": subtype}
    if restful not in event["subtype"]:
        out.append(f"subtype must include restful-interaction#{subtype}")
    if event["action"] != action:
        out.append(f"action must be {action}")
    for element in ("recorded", "outcome", "source"):
        if element not in event:
            out.append(f"{element} is required")
    agent_types = [a["type"]["coding"][0]["code"] for a in event["agent"]]
    for code, what in (("110153", "client"), ("110152", "server")):
        if agent_types.count(code) != 1:
            out.append(f"exactly one {what} agent (DCM {code}) is required")
    users = [a for a in event["agent"] if a["type"]["coding"][0]["code"] == "IRCP"]
    if len(users) > 1 or any("who" not in a for a in event["agent"]):
        out.append("at most one user agent, and every agent names who")
    roles = [e.get("role", {}).get("code") for e in event["entity"]]
    data = [e for e in event["entity"] if e.get("role", {}).get("code") == data_role]
    if len(data) != 1 or "what" not in data[0]:
        out.append(f"one data entity with role {data_role} and a what")
    if query and not (data and data[0].get("query")):
        out.append("the query entity must carry the query")
    patients = [e for e in event["entity"] if e.get("role", {}).get("code") == "1"]
    if patient and (roles.count("1") != 1 or not patients[0]["what"].get("reference", "").startswith("Patient/")
                    or patients[0]["type"]["code"] != "1"):
        out.append("one patient entity: a Patient reference, type 1, role 1")
    return out


def test_exported_reads_searches_and_updates_meet_the_balp_profiles(log: AuditLog) -> None:
    ig_scenario(log)
    log.record("read_report", actor="ig-1", actor_role="ig_officer", data_ref="report-7", source="192.0.2.9")
    by_action: dict[str, list[dict]] = {}
    for r in log.records():
        by_action.setdefault(r.action, []).append(fhir_audit_event(r))
    profiled = [e for a in ("read_timeline", "read_report", "consent_change") for e in by_action[a]]
    assert {e["meta"]["profile"][0].rsplit("/", 1)[1] for e in profiled} == {
        "IHE.BasicAudit.PatientQuery", "IHE.BasicAudit.PatientRead", "IHE.BasicAudit.Read",
        "IHE.BasicAudit.PatientUpdate"}
    for event in profiled:
        assert balp_problems(event) == [], (event["meta"], balp_problems(event))
        AuditEvent.model_validate(event)
    query = by_action["read_timeline"][0]
    assert base64.b64decode(query["entity"][0]["query"]).decode() == "audit:4"  # what was searched
    user = query["agent"][0]
    assert (user["who"]["identifier"]["value"], user["requestor"]) == ("coord-1", True)
    # an export is no RESTful interaction: no BALP profile is claimed for it
    assert "meta" not in by_action["share"][0]
    broken = dict(query, agent=query["agent"][:1])
    assert "exactly one client agent (DCM 110153) is required" in balp_problems(broken)


def test_csv_export_has_a_header_and_one_row_per_record(log: AuditLog) -> None:
    ig_scenario(log)
    records = log.records()
    rows = list(csv.reader(io.StringIO(export_csv(records))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(records) + 1
    assert [int(r[0]) for r in rows[1:]] == [r.seq for r in records]
    first = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert first["action"] == "consent_change" and json.loads(first["detail"]) == records[0].detail
    assert first["hash"] == records[0].hash


# ---- CLI --------------------------------------------------------------------------------------------
def _runner_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {"HUB_DATABASE_URL": db_url, "HUB_DATA_DIR": str(tmp_path / "data"), "HUB_LOG_LEVEL": "WARNING"}


def test_cli_verify_reports_tampering(db_url: str, tmp_path: Path) -> None:
    from hub.cli.main import app

    log = AuditLog(Store.open(db_url), anchor_every=0)
    seed(log)
    runner = CliRunner()
    env = _runner_env(db_url, tmp_path)
    ok = runner.invoke(app, ["audit", "verify"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "audit log intact: 10 records" in ok.output
    sql(log, "update audit_log set purpose = 'marketing' where seq = 3")
    sql(log, "delete from audit_log where seq = 6")
    bad = runner.invoke(app, ["audit", "verify"], env=env)
    assert bad.exit_code == 1
    assert "seq 3: ALTERED:" in bad.output and "seq 6: DELETED:" in bad.output


def test_cli_queries_and_exports(db_url: str, tmp_path: Path) -> None:
    from hub.cli.main import app

    log = AuditLog(Store.open(db_url), anchor_every=0)
    seqs = ig_scenario(log)
    runner = CliRunner()
    env = _runner_env(db_url, tmp_path)

    def run(*args: str) -> str:
        result = runner.invoke(app, ["audit", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert "school-a" in run("who-has-seen", "h-1") and "gp-9" not in run("who-has-seen", "h-1")
    assert "evt-9" in run("withheld", "h-1")
    assert "AWAITING" in run("overrides", "--awaiting")
    assert "reviewed" in run("review-override", str(seqs["o1"]), "--reviewer", "ig-1", "--outcome", "justified")
    assert "no overrides in that period" in run("overrides", "--until", "2000-01-01")
    assert "consent-1" in run("consent-history", "h-1")
    out_file = tmp_path / "audit.csv"
    run("export", "--format", "csv", "--household", "h-2", "--out", str(out_file))
    lines = out_file.read_text().splitlines()
    assert lines[0].startswith("seq,recorded_at,actor") and len(lines) == 3
    bundle = json.loads(run("export", "--format", "fhir"))
    assert Bundle.model_validate(bundle).entry[0].resource.agent[0].who.identifier.value == "parent-portal"
    assert "anchored seq" in run("anchor")
    bad = runner.invoke(app, ["audit", "export", "--format", "xml"], env=env)
    assert bad.exit_code == 2
