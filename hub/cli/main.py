"""The `hub` command line (typer). Every command reads HUB_* settings; see hub/core/settings.py."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Annotated

import typer
from rich.table import Table

from hub import VERSION
from hub.cli.audit import audit_app
from hub.cli.common import console, fail, fail_with, load_settings, open_store, out, run
from hub.cli.consent import consent_app
from hub.cli.governance import erase, keys_app, retention_app
from hub.cli.ingest import ingest_app
from hub.cli.returns import returns_app
from hub.core.errors import ConfigError, HubError
from hub.core.settings import running_bootstrap

app = typer.Typer(help="Family integration hub: agency events in, consent-gated family timelines out.",
                  no_args_is_help=True, add_completion=False)
dlq_app = typer.Typer(help="Inspect and re-drive dead-lettered records.", no_args_is_help=True)
schemas_app = typer.Typer(help="Check and release Avro schemas.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(schemas_app, name="schemas")
app.add_typer(ingest_app, name="ingest")
app.add_typer(consent_app, name="consent")
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")
app.add_typer(keys_app, name="keys")
app.add_typer(returns_app, name="returns")
app.command("erase")(erase)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"hub {VERSION}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the hub's version and exit.")] = False,
) -> None:
    """Family integration hub: agency events in, consent-gated family timelines out."""


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def up(
    workers: Annotated[int | None, typer.Option(help="Stream worker processes.")] = None,
    port: Annotated[int | None, typer.Option(help="API port (HUB_API_PORT).")] = None,
) -> None:
    """Start everything: embedded broker (unless HUB_KAFKA_BOOTSTRAP is set), workers, a deliverer and the API."""
    from hub.runtime.stack import Stack

    settings = load_settings(workers=workers, api_port=port)

    async def main() -> None:
        stack = Stack(settings)
        try:
            await stack.start()
            await stack.wait_ready()
            deliveries = "a deliverer" if stack.deliverer is not None else "deliveries in the workers"
            console.print(f"hub up: API on http://{settings.api_host}:{stack.settings.api_port}, "
                          f"Kafka {stack.bootstrap}, {len(stack.workers)} worker(s), {deliveries}. Ctrl-C stops.",
                          soft_wrap=True)
            await stack.serve_api()
        finally:
            await stack.stop()

    run(main())


@app.command()
def demo(
    serve: Annotated[bool, typer.Option("--serve", help="Keep the stack running after the demo.")] = False,
) -> None:
    """Bring the stack up, publish the seed journeys and show what the hub holds per family."""
    import os

    from hub.demo.run import run_demo

    # The demo talks to people: keep the JSON logs (and the workers') to warnings unless asked.
    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
    settings = load_settings()
    run(run_demo(settings, serve=serve, console=out))


@app.command()
def worker() -> None:
    """Run one stream worker in the foreground (`hub up` starts these for you)."""
    from hub.runtime.worker import run_worker

    settings = load_settings()
    if not settings.kafka_bootstrap:
        fail("HUB_KAFKA_BOOTSTRAP must name the Kafka cluster for a stand-alone worker")
    run_worker(settings)


@app.command()
def deliver(
    interval: Annotated[float, typer.Option(help="Seconds between looks for due deliveries when idle.")] = 0.05,
    probe_port: Annotated[int | None, typer.Option(
        help="Serve /healthz and /readyz on this port (default HUB_PROBE_PORT; none when unset).")] = None,
) -> None:
    """Deliver shares in a process of their own (webhooks, family copies, inbox, retries, audit trail,
    escalation, readiness sweep, audit checkpoints): run beside workers with HUB_DELIVERY_MODE=process
    (`hub up` starts one)."""
    from hub.db.store import Store
    from hub.runtime.deliverer import run_deliverer

    settings = load_settings()
    if settings.delivery_mode == "worker":
        console.print("note: HUB_DELIVERY_MODE=worker: the workers deliver too (each share is still sent once)")
    try:
        store = Store.open(settings.effective_database_url, migrate_schema=settings.owns_database)
    except HubError as exc:
        fail_with(exc, first_line=False)
    run(run_deliverer(store, poll=interval, probe_host=settings.api_host,
                       probe_port=probe_port or settings.probe_port, settings=settings))
    store.engine.dispose()


@app.command()
def api() -> None:
    """Serve the HTTP API only (against HUB_KAFKA_BOOTSTRAP and HUB_DATABASE_URL)."""
    import uvicorn

    from hub.ingest.services import Services
    from hub.pages.site import create_site

    settings = load_settings()
    if not settings.kafka_bootstrap:
        fail("HUB_KAFKA_BOOTSTRAP must name the Kafka cluster for a stand-alone API")
    try:
        services = Services.build(settings, migrate_schema=settings.owns_database)
    except HubError as exc:
        fail_with(exc, first_line=False)
    uvicorn.run(create_site(services), host=settings.api_host, port=settings.api_port, log_config=None)


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    from hub.db.store import Store

    settings = load_settings()
    try:
        Store.open(settings.effective_database_url)
    except HubError as exc:
        fail_with(exc, first_line=False)
    out.print("database is at the latest schema")


@app.command()
def topics(
    create: Annotated[bool, typer.Option("--create", help="Create missing topics first.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {topic: messages} as JSON.")] = False,
) -> None:
    """List the topic catalogue with message counts (starts the embedded broker's re-seed if needed)."""
    from hub.kafka.topics import CATALOGUE, ensure_topics, message_counts

    settings = load_settings()

    async def main() -> dict[str, int | None]:
        bootstrap = settings.kafka_bootstrap or running_bootstrap(settings)
        if not bootstrap:
            raise ConfigError("no broker is running: start the hub with `hub up` (or `hub demo --serve`), "
                              "or set HUB_KAFKA_BOOTSTRAP")
        if create:
            await ensure_topics(settings, bootstrap)
        return await message_counts(settings, bootstrap)

    counts = run(main())
    assert isinstance(counts, dict)
    if as_json:
        import json

        print(json.dumps(counts))
        return
    table = Table("topic", "messages", "key", "values", "retention")
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    for spec in CATALOGUE:
        n = counts.get(spec.name)
        table.add_row(spec.name, "-" if n is None else str(n), spec.key, spec.values,
                      "forever" if spec.retention_ms < 0 else f"{spec.retention_ms // 86400000} days")
    out.print(table)


@app.command()
def replay(
    processes: Annotated[int | None, typer.Option(
        "--processes", min=1, help="Worker processes that decode and seal (default: one per core from "
                                   "20,000 logged events, else none); 1 replays in this process.")] = None,
) -> None:
    """Rebuild every projection from the hub's own ingest log (after a mapping or rule change)."""
    from hub.stream.replay import replay_all

    settings = load_settings()
    n = run(replay_all(settings, console=out, processes=processes))
    out.print(f"replayed {n} event versions")


token_app = typer.Typer(help="Create access tokens signed by this hub (embedded default).", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="coordinator, agency, parent, young_person, ig_officer, admin, monitor")],
    subject: Annotated[str, typer.Option(help="Who the token is for (a user or system id, not a person's name).")],
    agency: Annotated[str | None, typer.Option(help="Agency id (role agency).")] = None,
    household: Annotated[str | None, typer.Option(help="Household id (parent, young_person).")] = None,
    member: Annotated[str | None, typer.Option(help="Member id (young_person: their own record).")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Print a bearer token for the HTTP API."""
    from hub.governance.auth import TokenService

    try:
        print(TokenService(load_settings()).create(subject, role, ttl=ttl, agency=agency, household=household,
                                               member=member))
    except HubError as exc:
        fail_with(exc, first_line=False)


@app.command("signin-link")
def signin_link(
    role: Annotated[str, typer.Option(help="coordinator, agency, parent, young_person, ig_officer, ...")],
    subject: Annotated[str, typer.Option(help="Who signs in (a user id, not a person's name).")],
    agency: Annotated[str | None, typer.Option(help="Agency id (role agency).")] = None,
    household: Annotated[str | None, typer.Option(help="Household id (parent, young_person).")] = None,
    member: Annotated[str | None, typer.Option(help="Member id (young_person: their own record).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Where the pages are served (default: the API address).")]
    = None,
) -> None:
    """Print a one-time sign-in link to the pages (valid HUB_SIGNIN_LINK_MINUTES, usable once)."""
    from hub.db.store import Store
    from hub.governance.auth import Principal
    from hub.pages import signin

    settings = load_settings()
    try:
        if settings.oidc_issuer:
            raise ConfigError("with HUB_OIDC_ISSUER set, people sign in to the pages with the identity provider")
        store = Store.open(settings.effective_database_url)
        token = signin.issue(store, Principal(subject, role, agency, household, member), settings.signin_link_minutes)
    except HubError as exc:
        fail_with(exc, first_line=False)
    print(f"{base_url or f'http://{settings.api_host}:{settings.api_port}'}/sign-in/{token}")


@dlq_app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="Include replayed ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per dead letter.")] = False,
) -> None:
    """Dead-lettered records with their reasons."""
    import json

    store = open_store(load_settings())
    letters = store.dead_letters(include_replayed=all_)
    if as_json:
        for r in letters:
            print(json.dumps({k: (str(v) if k in ("failed_at", "replayed_at") and v else v) for k, v in r.items()
                              if k not in ("value", "headers")}))
        return
    table = Table("id", "topic", "partition", "offset", "error", "reason", "failed at", "replayed")
    for r in letters:
        table.add_row(str(r["id"]), r["topic"], str(r["partition"]), str(r["offset"]), r["error_class"],
                      r["error_message"][:80], str(r["failed_at"])[:19], "yes" if r["replayed_at"] else "")
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(ids: Annotated[list[int] | None, typer.Argument(help="Dead letter ids (default: all).")] = None) -> None:
    """Re-drive dead letters: publish their original bytes to their original topic again."""
    from hub.stream.replay import replay_dead_letters

    settings = load_settings()
    n = run(replay_dead_letters(settings, ids or []))
    out.print(f"re-published {n} dead-lettered record(s)")


@schemas_app.command("check")
def schemas_check() -> None:
    """Fail if a schema breaks FULL_TRANSITIVE compatibility or is changed but not released."""
    from hub.wire.schemas import SchemaCatalogue

    cat = SchemaCatalogue(load_settings().schema_dir)
    bad = {t: cat.check(t) for t in cat.current}
    bad = {t: p for t, p in bad.items() if p}
    for t, problems in bad.items():
        console.print(f"{t}: " + "; ".join(problems))
    unreleased = cat.unreleased()
    if unreleased:
        console.print("changed but not released: " + ", ".join(unreleased) + " (run `hub schemas release`)")
    if bad or unreleased:
        raise typer.Exit(1)
    out.print(f"{len(cat.current)} schemas, all compatible and released")


@schemas_app.command("release")
def schemas_release() -> None:
    """Snapshot changed schemas as new released versions (refused if incompatible)."""
    from hub.wire.schemas import SchemaCatalogue

    try:
        done = SchemaCatalogue(load_settings().schema_dir).release()
    except HubError as exc:
        fail_with(exc, first_line=False)
    for t, v in done:
        out.print(f"released {t} v{v}")


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        try:
            app()
        except HubError as exc:  # a command that did not end it itself: one line and the error's exit code
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
    sys.exit(0)
