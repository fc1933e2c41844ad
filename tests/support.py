"""Helpers for tests that run the hub's own processes (worker, `hub up`) as real subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
TEST_JWT_KEY = "test-jwt-key-0123456789abcdef0123456789"


def bearer(role: str, subject: str = "tester", **claims: str) -> dict[str, str]:
    """An Authorization header signed with the key the test processes use."""
    from hub.core.settings import Settings
    from hub.governance.auth import TokenService

    token = TokenService(Settings(jwt_key=TEST_JWT_KEY)).create(subject, role, **claims)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


def enrol_child(base: str, coordinator: str, system: str, value: str) -> tuple[str, str]:
    """A household on ``coordinator``'s caseload with one child whose ``system`` identifier is linked, made
    through the enrolment routes as a coordinator does (agencies cannot send identity links)."""
    auth = bearer("coordinator", coordinator)
    r = httpx.post(f"{base}/v1/households", json={"coordinator_id": coordinator}, headers=auth, timeout=10)
    assert r.status_code == 201, r.text
    household = r.json()["household_id"]
    r = httpx.post(f"{base}/v1/households/{household}/members", json={"kind": "child", "relationship": "child"},
                   headers=auth, timeout=10)
    assert r.status_code == 201, r.text
    child = r.json()["member_id"]
    r = httpx.post(f"{base}/v1/households/{household}/members/{child}/identifiers",
                   json={"system": system, "value": value, "reason": "enrolled with the family"}, headers=auth,
                   timeout=10)
    assert r.status_code == 202, r.text
    return household, child


def keys_of(store: Any, data_dir: Path) -> Any:
    """``store`` with the key vault of the hub whose data directory is ``data_dir`` (its master key file, made
    now if missing): what this test reads and what the hub's processes seal agree."""
    from hub.core.settings import Settings
    from hub.db.keyvault import SqlKeyVault, load_keyring

    store.vault = SqlKeyVault(store, load_keyring(Settings(data_dir=data_dir, payload_master_key="")))
    return store


def worker_on(bootstrap: str, database_url: str, data_dir: Path, worker_name: str) -> tuple[Any, dict[str, str]]:
    """The settings of a hub on this broker and database (topics made, database migrated, as `hub migrate`
    does before a worker starts) and the environment a `hub worker` subprocess of it runs with."""
    import asyncio

    from hub.core.settings import Settings
    from hub.db.store import Store
    from hub.kafka.topics import ensure_topics

    settings = Settings(kafka_bootstrap=bootstrap, kafka_embedded=True, data_dir=data_dir, database_url=database_url,
                        pseudonym_key="test-key-0123456789abcdef")
    asyncio.run(ensure_topics(settings))
    Store.open(database_url).engine.dispose()
    env = hub_env(kafka_bootstrap=bootstrap, kafka_embedded="true", data_dir=data_dir, database_url=database_url,
                  worker_name=worker_name, delivery_mode="process")
    return settings, env


def hub_env(**settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({"HUB_PSEUDONYM_KEY": "test-key-0123456789abcdef",
                "HUB_JWT_KEY": TEST_JWT_KEY, "HUB_LOG_LEVEL": "INFO"})
    env.update({f"HUB_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "hub.cli", *args], env=env, cwd=ROOT,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def run_hub(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def wait_until(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def row_counts(store: Any) -> dict[str, int]:
    """Rows in every table of the hub's schema (a :class:`hub.store.Store`): to show nothing changed."""
    import sqlalchemy as sa

    from hub.db.schema import metadata

    with store.engine.connect() as conn:
        return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables}


_SPAN_EXPORTER: list[Any] = []


def span_exporter() -> Any:
    """The SDK's in-memory span exporter on this process's tracer provider (added once), emptied."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hub.core.tracing import configure_tracing

    if not _SPAN_EXPORTER:
        _SPAN_EXPORTER.append(InMemorySpanExporter())
        configure_tracing("familyhub-test", processors=[SimpleSpanProcessor(_SPAN_EXPORTER[0])])
    _SPAN_EXPORTER[0].clear()
    return _SPAN_EXPORTER[0]


@contextlib.contextmanager
def key_queries(store: Any) -> Iterator[list[str]]:
    """The statements run against the key vault's table while the block runs."""
    asked: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "subject_keys" in statement:
            asked.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield asked
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
