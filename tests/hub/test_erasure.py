"""Erasure of one person against a real broker, a real worker process and real SQLite and PostgreSQL:
afterwards their data cannot be read anywhere — projections, ingest log, Kafka topics — not even after
a full replay or the re-seeding of a new broker, while the other child's record is untouched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.api.app import create_app
from hub.cli.main import app as cli
from hub.core.errors import CorruptRecordError, ErasedRecordError, NotFoundError, ValidationError
from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.db.schema import ingest_log, stream_cursors, timeline_changes
from hub.db.store import Store
from hub.demo.identifiers import nhs_number, upn
from hub.family.enrolment import Enrolment
from hub.governance.audit import AuditLog
from hub.governance.auth import TokenService
from hub.governance.erasure import Erasure, MemberRef, live_key_count
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import INGEST_TOPICS, ensure_topics
from hub.runtime.stack import reseed_if_new
from hub.sharing.consents import list_directives
from hub.stream import readmodel
from hub.stream.replay import replay_log
from hub.wire.serde import SingleObjectSerde
from tests.support import hub_env, row_counts, spawn, stop, wait_until

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": None, "service_name": "SLT"}
SCHOOL = {"agency_id": "S1", "agency_name": None, "sector": "education", "service_code": None,
          "service_name": "Maes Ebbw Special School"}
ERASED_NAME = "Amelia Prosser-Quince"
ERASED_DOB = date(2017, 2, 13)
KEPT_DOB = date(2018, 6, 21)


def event(record_type: str, source_id: str, days: float, body: dict[str, Any], ident: SubjectRef,
          sector: str = "health") -> InboundEvent:
    return InboundEvent(record_type=record_type, sector=sector, source_system="abuhb-pas",  # type: ignore[arg-type]
                        source_id=source_id, occurred_at=T0 + timedelta(days=days), subject=ident, body=body)


def consent_granted(child_id: str, ident: SubjectRef) -> InboundEvent:
    directive = Directive(id=f"dir-{child_id}", child_id=child_id, made_by="parent-1", made_by_role=Grantor.PARENT,
                          made_at=T0, decision=DirectiveDecision("permit"),
                          scope=Scope(sectors=frozenset({Sector("health")}), agency_ids=None,
                                      purposes=frozenset({Purpose.DIRECT_CARE})))
    fhir = directive_to_fhir_dict(directive)
    fhir["patient"]["display"] = ERASED_NAME  # FHIR allows it, and agencies send it: erasure must reach it
    return InboundEvent(record_type="ConsentGranted", sector="family", source_system="hub-consent",
                        source_id=directive.id, occurred_at=T0, subject=ident,
                        body={"directive_id": directive.id, "granted_by": "family", "fhir_consent": json.dumps(fhir)})


def journey(nhs: SubjectRef, pupil: SubjectRef, tag: str) -> list[InboundEvent]:
    return [
        event("AppointmentBooked", f"{tag}-a1", 2, {"service": SLT, "start": T0 + timedelta(days=5)}, nhs),
        event("ReportIssued", f"{tag}-r1", 10, {"report_id": f"{tag}-r1", "service": SLT,
                                               "report_kind": "speech_and_language_therapy",
                                               "title": "SLT report"}, nhs),
        event("SchoolPlacement", f"{tag}-p1", 1, {"school": SCHOOL, "start_date": T0.date()}, pupil,
              sector="education"),
    ]


@pytest.fixture
def hub(db_url: str, tmp_path: Path) -> Iterator[tuple[Settings, Services]]:
    """A broker of its own, the database migrated, services built (the master key made), a worker."""
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, data_dir=tmp_path / "data",
                        database_url=db_url, pseudonym_key="test-key-0123456789abcdef",
                        jwt_key="test-jwt-key-0123456789abcdef0123456789")
    asyncio.run(ensure_topics(settings))
    services = Services.build(settings)
    env = hub_env(kafka_bootstrap=broker.bootstrap, kafka_embedded="true", data_dir=tmp_path / "data",
                  database_url=db_url, worker_name="w0")
    worker = spawn(["worker"], env, tmp_path / "worker.log")
    yield settings, services
    stop(worker)
    services.store.engine.dispose()
    broker.stop()


async def read_topics(bootstrap: str) -> list[Any]:
    """Every record on the ingest topics, read with a plain consumer (no hub code)."""
    consumer = AIOKafkaConsumer(*(t.name for t in INGEST_TOPICS), bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            out += [m for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return out


def table_texts(store: Store) -> str:
    """Every value of every column of every table, as text (bytes as Latin-1), for identifier scans."""
    chunks: list[str] = []
    reflected = sa.MetaData()
    reflected.reflect(store.engine)
    with store.engine.connect() as conn:
        for table in reflected.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value).decode("latin-1"))
                    elif value is not None:
                        chunks.append(str(value))
    return "\n".join(chunks)


async def erase_over_api(services: Services, body: dict[str, Any]) -> httpx.Response:
    token = TokenService(services.settings).create("ig-officer-1", "ig_officer")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)), base_url="http://hub.test",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        return await client.post("/v1/erasures", json=body)


@pytest.mark.broker
def test_erased_child_is_unreadable_everywhere_even_after_replay(hub: tuple[Settings, Services]) -> None:
    settings, services = hub
    store = services.store
    enrolment = Enrolment(store, services.ingest)
    household = enrolment.create_household("cc-1")
    gone = enrolment.add_member(household, "child", "son", date_of_birth=ERASED_DOB)
    kept = enrolment.add_member(household, "child", "daughter", date_of_birth=KEPT_DOB)
    gone_ids = (SubjectRef("nhs-number", nhs_number(701)), SubjectRef("upn", upn(701)))
    kept_ids = (SubjectRef("nhs-number", nhs_number(702)), SubjectRef("upn", upn(702)))

    async def load() -> None:
        await services.start()
        try:
            for member, ids in ((gone, gone_ids), (kept, kept_ids)):
                for ident in ids:
                    await enrolment.link(household, member.member_id, ident.system, ident.value, by="cc-1")
            await services.ingest.accept([*journey(*gone_ids, "g"), *journey(*kept_ids, "k"),
                                          consent_granted(gone.member_id, gone_ids[0])])
        finally:
            await services.stop()

    asyncio.run(load())

    def by_child() -> dict[str, int]:
        rows, _ = readmodel.timeline(store, household, limit=500)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["child_id"]] = counts.get(r["child_id"], 0) + 1
        return counts

    wait_until(lambda: by_child() == {gone.member_id: 4, kept.member_id: 3}, what="both timelines projected")

    def sharing_settled() -> bool:  # the worker's sharing step has read the whole change feed
        with store.engine.connect() as conn:
            last = conn.execute(sa.select(sa.func.max(timeline_changes.c.seq))).scalar()
            at = conn.execute(sa.select(stream_cursors.c.position)).scalar()
        return last is not None and at == last

    wait_until(sharing_settled, what="the sharing step to catch up")
    kept_before, _ = readmodel.timeline(store, household, child_id=kept.member_id, limit=500)
    # the name (in the Consent as the agency sent it) and the birth date are sealed at rest from the start;
    # the hub reads them with the child's keys
    assert ERASED_NAME not in table_texts(store) and ERASED_DOB.isoformat() not in table_texts(store)
    assert {m.date_of_birth for m in enrolment.household(household) if m.member_id == gone.member_id} == {ERASED_DOB}
    (held,) = list_directives(store, household, gone.member_id)
    assert held["fhir"]["patient"]["display"] == ERASED_NAME
    gone_subjects = sorted(services.pseudonymise(i.system, i.value) for i in gone_ids)
    audit = AuditLog(store)

    # the IG officer erases the child
    r = asyncio.run(erase_over_api(services, {"member": {"household_id": household, "member_id": gone.member_id},
                                              "reason": "erasure request ER-2291 from the family"}))
    assert r.status_code == 201, r.text
    result = r.json()
    # the two pseudonyms' keys and the member's own (their sealed birth date, copies of their reports)
    assert (result["status"], result["pseudonyms"], result["keys_shredded"]) == ("erased", 2, 3)
    assert live_key_count(store, gone_subjects) == 0

    def check_gone_and_kept() -> None:
        assert readmodel.timeline(store, household, child_id=gone.member_id, limit=500)[0] == []
        after, _ = readmodel.timeline(store, household, child_id=kept.member_id, limit=500)
        assert [e["event_id"] for e in after] == [e["event_id"] for e in kept_before]
        assert readmodel.parked_count(store) == 0

    check_gone_and_kept()
    # the ingest log keeps the sealed bytes, marked erased; they open for nobody
    plain = SingleObjectSerde(services.catalogue)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ingest_log).where(ingest_log.c.key.in_(gone_subjects))).all()
    assert len(rows) == 6 and all(row.erased_at is not None for row in rows)
    for row in rows:
        with pytest.raises(ErasedRecordError):
            services.serde.decode(bytes(row.value))
        with pytest.raises(CorruptRecordError):
            plain.decode(bytes(row.value))
    # so do the raw records on Kafka, read with a plain consumer; the other child's still open
    messages = asyncio.run(read_topics(settings.kafka_bootstrap))
    theirs = [m for m in messages if m.key.decode() in gone_subjects]
    assert len(theirs) == 6
    for m in theirs:
        with pytest.raises(ErasedRecordError):
            services.serde.decode(m.value)
        with pytest.raises(CorruptRecordError):
            plain.decode(m.value)
        assert nhs_number(701).encode() not in m.value and ERASED_NAME.encode() not in m.value
    others = [m for m in messages if m.key.decode() not in gone_subjects]
    assert len(others) == 5 and all(services.serde.decode(m.value).record_type for m in others)
    # no identifier of the erased child is left in any table
    text = table_texts(store)
    for needle in (nhs_number(701), upn(701), ERASED_NAME, ERASED_DOB.isoformat()):
        assert needle not in text, needle
    assert nhs_number(702) not in text  # identifiers are never stored for anyone, in fact
    assert KEPT_DOB.isoformat() not in text  # sealed, and still read with the other child's key:
    assert {m.date_of_birth for m in enrolment.household(household) if m.member_id == kept.member_id} == {KEPT_DOB}
    # one audit record, the chain intact, no identifiers in it
    assert audit.verify().ok
    [record] = audit.records(actions=["erasure"])
    assert (record.actor, record.actor_role, record.subject_child) == ("ig-officer-1", "ig_officer", gone.member_id)
    assert record.detail["subjects"] == gone_subjects and record.detail["reason"].startswith("erasure request")
    assert nhs_number(701) not in json.dumps(record.detail)

    # a full replay brings nothing of them back
    assert replay_log(store, services.catalogue, settings) > 0
    check_gone_and_kept()
    # nor does a new broker re-seeded from the log (the `hub up` restart on the embedded broker)
    fresh = EmbeddedBroker().start()
    try:
        moved = settings.model_copy(update={"kafka_bootstrap": fresh.bootstrap})
        asyncio.run(ensure_topics(moved))
        reseeded = Services.build(moved)

        async def reseed() -> int:
            await reseeded.start()
            try:
                return await reseed_if_new(reseeded, fresh.bootstrap)
            finally:
                await reseeded.stop()

        assert asyncio.run(reseed()) == 5  # the other child's links and events, nothing of the erased child
        republished = asyncio.run(read_topics(fresh.bootstrap))
        assert not [m for m in republished if m.key.decode() in gone_subjects] and len(republished) == 5
        reseeded.store.engine.dispose()
    finally:
        fresh.stop()
    check_gone_and_kept()

    # erasing again changes nothing
    again = asyncio.run(erase_over_api(services, {"member": {"household_id": household, "member_id": gone.member_id},
                                                  "reason": "erasure request ER-2291 from the family"}))
    assert again.status_code == 200 and again.json()["status"] == "already_erased"
    assert again.json()["erasure_id"] == result["erasure_id"] and len(audit.records(actions=["erasure"])) == 1


# ---- without a broker: the log and projections as the API and worker leave them ---------------------
def accepted(services: Services, events: list[InboundEvent]) -> None:
    """Events in the ingest log and projected, as the worker would (no broker needed)."""
    prepared, problems = services.ingest.prepare(events)
    assert not problems
    services.store.append([p.row for p in prepared if p])
    replay_log(services.store, services.catalogue, services.settings)


def link(ident: SubjectRef, child: str, household: str) -> InboundEvent:
    return InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrolment",
                        source_id=f"link-{child}-{ident.system}", occurred_at=T0, subject=ident,
                        body={"action": "link", "child_id": child, "household_id": household,
                              "identifier_system": ident.system})


@pytest.fixture
def services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    svc = Services.build(Settings(database_url=db_url, data_dir=tmp_path, pseudonym_key="k" * 32))
    yield svc
    svc.store.engine.dispose()


def test_bad_requests_are_refused_clearly_and_change_nothing(services: Services) -> None:
    nhs = SubjectRef("nhs-number", nhs_number(711))
    accepted(services, [link(nhs, "child-711", "hh-711"), *journey(nhs, SubjectRef("upn", upn(711)), "b")])
    erasure = Erasure(services.store, services.vault, services.pseudonymise)
    before = row_counts(services.store)
    unknown = SubjectRef("nhs-number", nhs_number(799))
    with pytest.raises(NotFoundError, match="no such member"):
        erasure.erase(MemberRef("hh-711", "child-nobody"), reason="request 1", actor="ig-1")
    with pytest.raises(NotFoundError, match="no such member"):  # a real child, but not in that household
        erasure.erase(MemberRef("hh-other", "child-711"), reason="request 1", actor="ig-1")
    with pytest.raises(NotFoundError, match="holds no data") as exc:
        erasure.erase(unknown, reason="request 1", actor="ig-1")
    assert nhs_number(799) not in str(exc.value)
    for reason in (None, "", "   "):
        with pytest.raises(ValidationError, match="written reason"):
            erasure.erase(MemberRef("hh-711", "child-711"), reason=reason, actor="ig-1")
    with pytest.raises(ValidationError, match="must not hold") as refused:
        erasure.erase(nhs, reason=f"asked by parent of {nhs_number(711)}", actor="ig-1")
    assert nhs_number(711) not in str(refused.value)
    with pytest.raises(ValidationError, match="system"):
        erasure.erase(SubjectRef("passport", "123"), reason="request 1", actor="ig-1")
    assert row_counts(services.store) == before
    assert readmodel.timeline(services.store, "hh-711", limit=50)[0]


def test_erasure_by_identifier_reaches_every_linked_pseudonym(services: Services) -> None:
    nhs, pupil = SubjectRef("nhs-number", nhs_number(721)), SubjectRef("upn", upn(721))
    other = SubjectRef("nhs-number", nhs_number(722))
    accepted(services, [link(nhs, "child-721", "hh-721"), link(pupil, "child-721", "hh-721"),
                        link(other, "child-722", "hh-721"), *journey(nhs, pupil, "i"),
                        event("AppointmentBooked", "o-1", 3, {"service": SLT, "start": T0}, other)])
    result = Erasure(services.store, services.vault, services.pseudonymise).erase(
        pupil, reason="request 2", actor="ig-1", actor_role="ig_officer")
    assert (result.kind, result.member_id, len(result.subjects), result.keys_shredded) == ("member", "child-721", 2, 2)
    rows, _ = readmodel.timeline(services.store, "hh-721", limit=50)
    assert [r["child_id"] for r in rows] == ["child-722"]


def test_an_unlinked_subject_is_erased_and_new_information_after_it_is_kept(services: Services) -> None:
    parked = SubjectRef("nhs-number", nhs_number(731))
    accepted(services, journey(parked, SubjectRef("upn", upn(731)), "p")[:2])
    assert readmodel.parked_count(services.store) == 2
    erasure = Erasure(services.store, services.vault, services.pseudonymise)
    first = erasure.erase(parked, reason="request 3", actor="ig-1")
    assert (first.status, first.kind, first.keys_shredded) == ("erased", "subject", 1)
    assert readmodel.parked_count(services.store) == 0
    again = erasure.erase(parked, reason="request 3", actor="ig-1")
    assert (again.status, again.erasure_id) == ("already_erased", first.erasure_id)
    # the agency sends something new about the person: sealed under a new key, projected (parked)
    accepted(services, [event("AppointmentBooked", "p-new", 30, {"service": SLT, "start": T0}, parked)])
    assert readmodel.parked_count(services.store) == 1
    assert live_key_count(services.store, first.subjects) == 1


def test_hub_erase_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    svc = Services.build(Settings(database_url=url, data_dir=tmp_path, pseudonym_key="k" * 32))
    nhs = SubjectRef("nhs-number", nhs_number(741))
    accepted(svc, [link(nhs, "child-741", "hh-741"), *journey(nhs, SubjectRef("upn", upn(741)), "c")])
    env = {"HUB_DATABASE_URL": url, "HUB_DATA_DIR": str(tmp_path), "HUB_PSEUDONYM_KEY": "k" * 32}
    runner = CliRunner()
    missing = runner.invoke(cli, ["erase", "--by", "ig-1", "--household", "hh-741", "--member", "child-741"], env=env)
    assert missing.exit_code == 2 and "written reason" in missing.output
    unknown = runner.invoke(cli, ["erase", "--by", "ig-1", "--reason", "r", "--system", "nhs-number"], env=env,
                            input=nhs_number(742) + "\n")
    assert unknown.exit_code == 2 and "holds no data" in unknown.output and nhs_number(742) not in unknown.output
    done = runner.invoke(cli, ["erase", "--by", "ig-1", "--reason", "request 4", "--household", "hh-741",
                               "--member", "child-741"], env=env)
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "erased member child-741 of household hh-741: 1 pseudonym(s), 1 data key(s) shredded" in said
    again = runner.invoke(cli, ["erase", "--by", "ig-1", "--reason", "request 4", "--household", "hh-741",
                                "--member", "child-741"], env=env)
    assert again.exit_code == 0 and "already erased" in again.output
    assert AuditLog(svc.store).verify().ok
    svc.store.engine.dispose()
