"""End-to-end ingest rate per connector: parse + map + Avro prepare + ingest log + publish (acks=all).

Run: /work/venv/bin/python bench/bench_ingest.py [--rows 20000] [--fhir 5000] [--profile LABEL]
Single process; starts its own embedded broker and a temporary SQLite database. Synthetic input is
generated from tests/connectors/fixtures by varying ids. For each input it prints the end-to-end rate
and where the time went (parse+map, prepare, accept = DB log + publish + mark published), and for
FHIR the bare ``fhir.resources`` R4B validation rate of the same resources as the baseline.
Goals: FHIR ≥ 0.7× bare validation; social-care / education JSON and CSV ≥ 10,000 events/s.

``--api``: the same inputs POSTed to ``/v1/ingest/<sector>`` of the real app (in process, over ASGI)
with an agency token, in requests of 500 events, so everything the ingest routes do per request and
per event is measured too (authentication, the agency binding, FHIR references). Where the hub has
an agency registry (``HUB_AGENCIES_FILE``) the agency is registered in one naming every organisation
the inputs name, so the organisation check runs on every event.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, before site-packages

import os

os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")

from pyinstrument import Profiler

from bench.profile_top import from_pyinstrument, table
from connectors import education, health, social_care
from connectors.health import fhir
from connectors.results import RecordResult
from hub.core.logging import configure_logging
from hub.core.settings import Settings
from hub.ingest.batch import Summary, accept_batch, prepare_batch
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "connectors" / "fixtures"
CHUNK = 500


# --- synthetic input ----------------------------------------------------------------------------


def _good_csv_rows(
    name: str, module: Any, id_column: str = "event_id"
) -> tuple[list[str], list[dict[str, str]]]:
    text = (FIXTURES / name).read_text()
    reader = csv.DictReader(io.StringIO(text))
    header = list(reader.fieldnames or [])
    rows = []
    for row in reader:
        if None in row or len(row) != len(header):
            continue
        one = io.StringIO()
        w = csv.DictWriter(one, header)
        w.writeheader()
        w.writerow(row)
        if module.parse_payload(one.getvalue(), "text/csv").events:
            rows.append(row)
    return header, rows


def records_input(name: str, module: Any, n: int) -> tuple[bytes, bytes]:
    """(CSV, JSON array) with ``n`` good rows, ids varied."""
    header, rows = _good_csv_rows(name, module)
    out: list[dict[str, str]] = []
    i = 0
    while len(out) < n:
        for row in rows:
            out.append({**row, "event_id": f"{row['event_id']}-{i}"})
        i += 1
    out = out[:n]
    buf = io.StringIO()
    w = csv.DictWriter(buf, header, lineterminator="\n")
    w.writeheader()
    w.writerows(out)
    as_json = [{k: v for k, v in r.items() if v} for r in out]
    return buf.getvalue().encode(), json.dumps(as_json).encode()


def fhir_input(n: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    """``batch`` Bundles of 500 with ``n`` event resources (Appointments and EpisodeOfCare, ids varied)."""
    appointment = json.loads((FIXTURES / "health/appointment-booked.json").read_text())
    lines = (FIXTURES / "health/resources.ndjson").read_text().splitlines()
    episode = json.loads(lines[0])
    resources = []
    for i in range(n):
        base = appointment if i % 2 == 0 else episode
        resources.append({**base, "id": f"{base['id']}-{i}"})
    bundles = []
    for start in range(0, n, CHUNK):
        chunk = resources[start : start + CHUNK]
        bundles.append(
            json.dumps(
                {
                    "resourceType": "Bundle",
                    "type": "batch",
                    "entry": [
                        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                        for r in chunk
                    ],
                }
            ).encode()
        )
    return bundles, resources


# --- measuring ----------------------------------------------------------------------------------


class Timer:
    def __init__(self) -> None:
        self.parts: dict[str, float] = {"parse+map": 0.0, "prepare": 0.0, "accept": 0.0}

    def add(self, part: str, since: float) -> float:
        now = time.perf_counter()
        self.parts[part] += now - since
        return now


def _chunks(results: Iterator[RecordResult], size: int) -> Iterator[list[RecordResult]]:
    chunk: list[RecordResult] = []
    for r in results:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def ingest(
    services: Services, payloads: list[bytes], parse: Callable[[bytes], Iterator[RecordResult]], timer: Timer
) -> Summary:
    total = Summary()
    for body in payloads:
        t = time.perf_counter()
        results = list(parse(body))
        t = timer.add("parse+map", t)
        for chunk in _chunks(iter(results), CHUNK):
            t = time.perf_counter()
            batch = prepare_batch(services.ingest, chunk)
            t = timer.add("prepare", t)
            total.merge(await accept_batch(services.ingest, batch))
            timer.add("accept", t)
    return total


def split_payload(body: bytes, kind: str) -> list[bytes]:
    """One input as an agency system sends it: requests of :data:`CHUNK` rows (CSV keeps its header)."""
    if kind == "csv":
        header, *rows = body.decode().splitlines(keepends=True)
        return [(header + "".join(rows[i : i + CHUNK])).encode() for i in range(0, len(rows), CHUNK)]
    if kind == "json":
        items = json.loads(body)
        return [json.dumps(items[i : i + CHUNK]).encode() for i in range(0, len(items), CHUNK)]
    return [body]


def agencies_file(directory: Path, cases: list[Any]) -> Path | None:
    """A registry naming the bench agency with every organisation the inputs name (None where the hub
    has no agency registry)."""
    try:
        from hub.governance.agency_binding import producing_organisation
    except ImportError:
        return None
    organisations = {"BENCH"}
    for _label, payloads, parse, _n, _kind, _path in cases:
        for body in payloads:
            organisations |= {o for r in parse(body) if r.event and (o := producing_organisation(r.event.body))}
    path = directory / "agencies.json"
    path.write_text(json.dumps({"agencies": [{
        "id": "BENCH", "sectors": ["health", "social_care", "education"], "source_systems": ["bench-system"],
        "organisations": sorted(organisations)}]}))
    return path


@dataclass
class Answered:
    """The counts the ingest routes answered for one input."""

    accepted: int = 0
    rejected: int = 0
    problems: list[Any] = field(default_factory=list)


async def post_all(client: Any, path: str, payloads: list[bytes], kind: str, timer: Timer) -> Answered:
    """POST every request of one input, as an agency system sends it."""
    media = {"csv": "text/csv", "json": "application/json", "fhir": "application/fhir+json"}[kind]
    total = Answered()
    for body in payloads:
        for part in split_payload(body, kind):
            t = time.perf_counter()
            r = await client.post(path, content=part, headers={"Content-Type": media})
            timer.add("accept", t)
            if r.status_code != 200:
                total.problems.append((r.status_code, r.text[:300]))
            answer = r.json()
            total.accepted += answer.get("accepted", 0)
            total.rejected += answer.get("rejected", 0)
    return total


def api_client(services: Services) -> Any:
    """An HTTP client of the real app (no lifespan: the services are started here) with an agency token."""
    import httpx

    from hub.api.app import create_app
    from hub.governance.auth import TokenService

    token = TokenService(services.settings).create("bench-system", "agency", agency="BENCH")  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)), base_url="http://hub.bench",
                             headers={"Authorization": f"Bearer {token}"}, timeout=120)


def bare_validation_rate(resources: list[dict[str, Any]]) -> float:
    t = time.perf_counter()
    for r in resources:
        fhir.get_fhir_model_class(r["resourceType"]).model_validate(r)
    return len(resources) / (time.perf_counter() - t)


def report(label: str, n: int, elapsed: float, timer: Timer, summary: Summary | Answered, goal: str,
           cpu: float = 0.0) -> float:
    """One line per input; ``cpu``: this process's CPU seconds for it (the broker runs in its own), which
    other work on a shared machine disturbs far less than the wall-clock rate."""
    rate = n / elapsed
    parts = ", ".join(f"{k} {v / elapsed:.0%}" for k, v in timer.parts.items())
    print(f"{label:<28} {n:>7} events  {elapsed:6.2f} s  {rate:>9,.0f} events/s  {cpu / n * 1e6:5.0f} µs CPU/event"
          f"   ({parts})  {goal}")
    assert summary.accepted == n and not summary.rejected, (
        summary.accepted,
        summary.rejected,
        summary.problems[:3],
    )
    return rate


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING", "console")
    broker = EmbeddedBroker().start()
    tmp = tempfile.TemporaryDirectory()
    try:
        cases: list[tuple[str, list[bytes], Callable[[bytes], Iterator[RecordResult]], int, str, str]] = []
        for sector, module, fixture in (
            ("social-care", social_care, "social_care/newport-events.csv"),
            ("education", education, "education/send-events.csv"),
        ):
            csv_body, json_body = records_input(fixture, module, args.rows)
            # the JSON and CSV runs use different ids so that neither is a run of duplicates
            json_body = json_body.replace(b'"event_id": "', b'"event_id": "J')
            route = f"/v1/ingest/{sector}"
            cases.append((f"{sector} CSV", [csv_body], lambda b, m=module: m.iter_payload(b, "text/csv"),
                          args.rows, "csv", route))
            cases.append((f"{sector} JSON", [json_body], lambda b, m=module: m.iter_payload(b, "application/json"),
                          args.rows, "json", route))
        bundles, resources = fhir_input(args.fhir)
        cases.append(("health FHIR batch Bundles", bundles, lambda b: health.iter_payload(b, "application/fhir+json"),
                      args.fhir, "fhir", "/v1/ingest/health"))

        registry = agencies_file(Path(tmp.name), cases) if args.api else None
        settings = Settings(
            kafka_bootstrap=broker.bootstrap,
            kafka_embedded=True,
            data_dir=Path(tmp.name),
            database_url=f"sqlite:///{tmp.name}/bench.db",
            pseudonym_key="b" * 32,
            jwt_key="bench-jwt-key-0123456789abcdef0123456789",
            **({"agencies_file": registry} if registry else {}),
        )
        await ensure_topics(settings)
        services = Services.build(settings)
        await services.start()
        client = api_client(services) if args.api else None
        how = f"POST /v1/ingest/* in requests of {CHUNK}, agency registry: {'yes' if registry else 'no'}" \
            if args.api else f"chunks of {CHUNK}"
        print(f"embedded broker {broker.bootstrap}, SQLite {tmp.name}/bench.db, {how}, acks=all")

        rates: dict[str, float] = {}
        for label, payloads, parse, n, kind, route in cases:
            if args.profile and args.profile.lower() not in label.lower():
                continue
            timer = Timer()
            profiler = Profiler(interval=0.0005, async_mode="disabled") if args.profile else None
            t, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.start()
            if client is not None:
                summary: Summary | Answered = await post_all(client, route, payloads, kind, timer)
            else:
                summary = await ingest(services, payloads, parse, timer)
            if profiler:
                profiler.stop()
            elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
            goal = (
                ""
                if label.startswith("health")
                else ("(goal 10,000/s: met)" if n / elapsed >= 10000 else "(goal 10,000/s: MISSED)")
            )
            rates[label] = report(label, n, elapsed, timer, summary, goal, cpu)
            if profiler:
                own, total, whole = from_pyinstrument(profiler.last_session)
                print(f"profile of {label} (pyinstrument, this process; the broker runs in its own):")
                print(table(own, total, whole, 25))

        if "health FHIR batch Bundles" in rates:
            bare = bare_validation_rate(resources)
            ratio = rates["health FHIR batch Bundles"] / bare
            print(
                f"{'fhir.resources R4B validate':<28} {len(resources):>7} resources          {bare:>9,.0f} "
                f"resources/s   (the same resources, model_validate only)"
            )
            print(
                f"FHIR end-to-end / bare validation = {ratio:.2f}x  (goal >= 0.70x: "
                f"{'met' if ratio >= 0.7 else 'MISSED'})"
            )
        if client is not None:
            await client.aclose()
        await services.stop()
        services.store.engine.dispose()
    finally:
        broker.stop()
        tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows per CSV/JSON input")
    parser.add_argument("--fhir", type=int, default=5000, help="FHIR resources")
    parser.add_argument(
        "--profile", help="run only the cases whose label contains this (e.g. 'education CSV') under pyinstrument "
                          "and print the top functions by self and total time"
    )
    parser.add_argument("--api", action="store_true", help="POST the inputs to the ingest routes (see above)")
    asyncio.run(main(parser.parse_args()))
