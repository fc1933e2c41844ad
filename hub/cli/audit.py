"""`hub audit …`: verify the audit chain, answer IG questions, export (registered in hub/cli/main.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from hub.cli.common import fail, fail_with, load_settings, open_store, out, run
from hub.core.errors import HubError

if TYPE_CHECKING:
    from hub.governance.audit import AuditLog

audit_app = typer.Typer(help="Prove who saw what and why: verify and query the hash-chained audit log.",
                        no_args_is_help=True)


def _log() -> AuditLog:
    from hub.governance.audit import AuditLog

    return AuditLog(open_store(load_settings()))


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _parse_when(value: str | None, *, end: bool = False) -> datetime | None:
    """ISO date or datetime (UTC if no offset); a bare date as --until means the end of that day."""
    if not value:
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"not a date or date-time: {value!r} (use YYYY-MM-DD or an ISO-8601 date-time)")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _print(table: Table, empty: str) -> None:
    if table.row_count:
        out.print(table)
    else:
        out.print(empty)


@audit_app.command("verify")
def verify() -> None:
    """Walk the chain and compare it with the signed checkpoints (file, topic); exit 1 listing each problem
    as `seq N: KIND: …` (ALTERED, DELETED, REORDERED, INSERTED, TRUNCATED, FORGED, APPENDED,
    CHECKPOINT_MISSING, CHECKPOINT_INVALID; docs/operations.md says what each means)."""
    from hub.core.settings import running_bootstrap
    from hub.governance.checkpoint_verify import verify_all

    settings = load_settings()
    log = _log()
    report = run(verify_all(log, settings, settings.kafka_bootstrap or running_bootstrap(settings)))
    where = " and ".join(report.checkpoint_sources)
    seal = (f"{report.checkpoints_checked} signed checkpoint(s) from the {where}; covered to seq "
            f"{report.covered_to}, {report.uncovered} record(s) after the last checkpoint not yet covered"
            if where else "checkpoints not checked: no public key here, set HUB_AUDIT_PUBLIC_KEYS_FILE")
    if report.ok:
        out.print(f"audit log intact: {report.records} records ({report.anchors_checked} anchors checked; {seal})",
                  highlight=False, soft_wrap=True)
        return
    out.print(f"audit log FAILED verification: {len(report.problems)} problem(s) in {report.records} records "
              f"({seal})", highlight=False, soft_wrap=True)
    for p in report.problems:
        out.print(str(p), highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("anchor")
def anchor() -> None:
    """Store the current last seq and hash as an anchor in the database (see `checkpoint` for a signed one)."""
    a = _log().anchor()
    out.print("audit log is empty: nothing to anchor" if a is None else f"anchored seq {a.seq} hash {a.hash}",
              highlight=False)


@audit_app.command("checkpoint")
def checkpoint() -> None:
    """Sign a checkpoint of the chain's head now and publish it (file, topic, timestamp authority)."""
    from hub.governance.checkpoint_writer import CheckpointWriter
    from hub.governance.checkpoints import load_or_create_signing_key

    settings = load_settings()
    log = _log()
    try:
        key = load_or_create_signing_key(settings)
    except HubError as exc:
        fail_with(exc, first_line=False)
    cp = run(CheckpointWriter(log.store, settings, key).checkpoint())
    out.print("nothing new to checkpoint" if cp is None else
              f"checkpoint of seq {cp.seq} ({cp.records} records) signed by key {cp.key_id}", highlight=False)


@audit_app.command("public-key")
def public_key() -> None:
    """Print the checkpoint signing key's public half (PEM) for verifiers to hold (creates the key if absent)."""
    from hub.governance.checkpoints import key_id, load_or_create_signing_key, public_key_pem

    settings = load_settings()
    try:
        public = load_or_create_signing_key(settings).public_key()
    except HubError as exc:
        fail_with(exc, first_line=False)
    typer.echo(f"# audit checkpoint key {key_id(public)}")
    typer.echo(public_key_pem(public), nl=False)


@audit_app.command("who-has-seen")
def who_has_seen(household: Annotated[str, typer.Argument(help="Pseudonymous household id.")]) -> None:
    """Who read or was sent this household's data, grouped by actor."""
    from hub.governance.audit_queries import who_has_seen as query

    table = Table("actor", "role", "actions", "first", "last", "items")
    for a in query(_log(), household):
        table.add_row(a.actor, a.actor_role, ", ".join(f"{k}×{v}" for k, v in a.actions.items()),
                      _when(a.first_at), _when(a.last_at), str(len(a.data_refs)))
    _print(table, f"no reads or shares recorded for household {household}")


@audit_app.command("withheld")
def withheld(household: Annotated[str | None, typer.Argument(help="Pseudonymous household id.")] = None) -> None:
    """What was withheld or held, and why."""
    import json

    from hub.governance.audit_queries import withheld as query

    table = Table("seq", "at", "action", "household", "child", "item", "by", "why")
    for r in query(_log(), household):
        table.add_row(str(r.seq), _when(r.recorded_at), r.action, r.subject_household or "", r.subject_child or "",
                      r.data_ref or "", r.actor, json.dumps(r.detail, sort_keys=True))
    _print(table, "nothing withheld or held" + (f" for household {household}" if household else ""))


@audit_app.command("overrides")
def overrides(
    since: Annotated[str | None, typer.Option(help="From this date/time (UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date (inclusive) or date-time (exclusive).")] = None,
    awaiting: Annotated[bool, typer.Option("--awaiting", help="Only overrides not yet reviewed.")] = False,
) -> None:
    """Safeguarding overrides in a period, with their review status."""
    from hub.governance.audit_queries import overrides as query

    table = Table("seq", "at", "by", "household", "child", "item", "basis", "review")
    for s in query(_log(), since=_parse_when(since), until=_parse_when(until, end=True), awaiting_only=awaiting):
        o = s.override
        review = "AWAITING REVIEW" if s.review is None else \
            f"{s.review.detail.get('outcome', '')} by {s.review.actor} at {_when(s.review.recorded_at)}"
        table.add_row(str(o.seq), _when(o.recorded_at), o.actor, o.subject_household or "", o.subject_child or "",
                      o.data_ref or "", o.legal_basis or "", review)
    _print(table, "no overrides" + (" awaiting review" if awaiting else "") + " in that period")


@audit_app.command("review-override")
def review_override(
    seq: Annotated[int, typer.Argument(help="Seq of the override record.")],
    reviewer: Annotated[str, typer.Option(help="Who reviewed it.")],
    outcome: Annotated[str, typer.Option(help="e.g. justified, not-justified, escalated.")],
    note: Annotated[str | None, typer.Option(help="Short note (no personal identifiers).")] = None,
) -> None:
    """Record the review of a safeguarding override."""
    from hub.governance.audit_queries import review_override as review

    try:
        r = review(_log(), seq, reviewer, outcome, note=note)
    except (HubError, ValueError) as exc:
        fail(str(exc))
        return
    out.print(f"override {seq} reviewed: {outcome} (audit seq {r.seq})", highlight=False)


@audit_app.command("consent-history")
def consent_history(household: Annotated[str, typer.Argument(help="Pseudonymous household id.")]) -> None:
    """Every consent change recorded for a household."""
    import json

    from hub.governance.audit_queries import consent_history as query

    table = Table("seq", "at", "by", "child", "item", "basis", "change")
    for r in query(_log(), household):
        table.add_row(str(r.seq), _when(r.recorded_at), r.actor, r.subject_child or "", r.data_ref or "",
                      r.legal_basis or "", json.dumps(r.detail, sort_keys=True))
    _print(table, f"no consent changes recorded for household {household}")


@audit_app.command("export")
def export(
    format_: Annotated[str, typer.Option("--format", help="fhir (R4 AuditEvent Bundle) or csv.")] = "fhir",
    household: Annotated[str | None, typer.Option(help="Only this household's records.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Export audit records as a FHIR R4 AuditEvent Bundle or CSV."""
    from hub.governance.export import export_csv, export_fhir

    if format_ not in ("fhir", "csv"):
        fail(f"--format must be fhir or csv, not {format_!r}")
    records = _log().records(household=household)
    text: Any = export_fhir(records) if format_ == "fhir" else export_csv(records)
    if out_file is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    out_file.write_text(text, encoding="utf-8")
    out.print(f"wrote {len(records)} audit record(s) to {out_file}", highlight=False)
