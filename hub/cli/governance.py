"""`hub erase`, `hub retention …` and `hub keys …`: erasure, retention and payload keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hub.cli.common import fail, fail_with, load_settings, open_store, out
from hub.core.errors import HubError

if TYPE_CHECKING:
    from hub.db.store import Store
    from hub.governance.alert_retention import AlertRetentionReport

retention_app = typer.Typer(help="Remove events older than their agency's retention period, and old resolved alerts.",
                            no_args_is_help=True)
keys_app = typer.Typer(help="Per-subject payload keys and the master key that wraps them.", no_args_is_help=True)


def _store() -> Store:
    return open_store(load_settings())


def erase(
    by: Annotated[str, typer.Option("--by", help="Who asked for the erasure (a user id, not a person's name).")],
    reason: Annotated[str | None, typer.Option(help="Why (e.g. the request's reference). Required.")] = None,
    household: Annotated[str | None, typer.Option(help="Household id of the member to erase.")] = None,
    member: Annotated[str | None, typer.Option(help="Member (or child) id to erase.")] = None,
    system: Annotated[str | None, typer.Option(help="Identifier system (nhs-number, upn, la-person-id, …).")] = None,
    value: Annotated[str | None, typer.Option(help="Identifier value; asked for (hidden) if left out.")] = None,
) -> None:
    """Erase one person: shred their data keys, purge every projection, write one audit record.

    Give either --household and --member, or --system (and --value, or type it when asked). Erasing
    someone already erased changes nothing.
    """
    from hub.core.events import SubjectRef
    from hub.db.keyvault import SqlKeyVault, load_keyring
    from hub.governance.erasure import Erasure, MemberRef
    from hub.ingest.pseudonym import Pseudonymiser, load_or_create_key

    if (household or member) and system:
        fail("give either --household and --member, or --system and --value, not both")
    target: MemberRef | SubjectRef
    if household or member:
        if not (household and member):
            fail("--household and --member go together")
        target = MemberRef(str(household), str(member))
    elif system:
        if value is None:
            value = typer.prompt("identifier value", hide_input=True)
        target = SubjectRef(system, value)
    else:
        fail("say whom to erase: --household and --member, or --system and --value")
        return
    settings = load_settings()
    try:
        store = _store()
        erasure = Erasure(store, SqlKeyVault(store, load_keyring(settings)), Pseudonymiser(
            load_or_create_key(settings.pseudonym_key.get_secret_value(), settings.pseudonym_key_file,
                               settings.data_dir)))
        result = erasure.erase(target, reason=reason, actor=by, actor_role="cli")
    except HubError as exc:
        fail_with(exc)
    who = f"member {result.member_id} of household {result.household_id}" if result.member_id else "subject"
    if result.status == "already_erased":
        out.print(f"{who}: already erased (erasure {result.erasure_id}, audit record {result.audit_seq}); "
                  "nothing changed")
        return
    out.print(f"erased {who}: {len(result.subjects)} pseudonym(s), {result.keys_shredded} data key(s) shredded, "
              f"{sum(result.removed.values())} row(s) removed or marked; erasure {result.erasure_id}, "
              f"audit record {result.audit_seq}")
    for table, n in sorted(result.removed.items()):
        out.print(f"  {table}: {n}")


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be removed.")] = False,
) -> None:
    """Remove events older than their producing agency's period (HUB_RETENTION_POLICY) and alerts resolved
    more than HUB_ALERT_RETENTION_DAYS ago (default 365); each audited.

    Safe to run on a schedule (e.g. nightly): it is idempotent. Kafka's topic retention covers the
    broker's copies (docs/operations.md).
    """
    from hub.governance.alert_retention import apply_alert_retention
    from hub.governance.retention import apply_retention, load_policy

    settings = load_settings()
    try:
        policy = load_policy(settings)
        store = _store()
        alerts = apply_alert_retention(store, dry_run=dry_run)
        report = apply_retention(store, policy, dry_run=dry_run) if policy.as_dict() else None
    except HubError as exc:
        fail_with(exc)
    _print_alert_retention(alerts)
    if report is None:
        out.print("no retention policy (HUB_RETENTION_POLICY): no events are removed")
        return
    table = Table("agency", "period (days)", "cut-off (event time)", "expired events", "versions")
    for a in report.agencies:
        table.add_row(a.agency_id, str(a.days), a.cutoff.strftime("%Y-%m-%d %H:%M"), str(a.events), str(a.versions))
    out.print(table)
    if dry_run:
        out.print(f"dry run: {report.events} event(s) would be removed; nothing changed")
    elif report.events:
        out.print(f"removed {report.events} event(s) ({sum(report.removed.values())} row(s)); "
                  f"audit record {report.audit_seq}")
    else:
        out.print("nothing has expired")


def _print_alert_retention(report: AlertRetentionReport) -> None:
    if report.cutoff is None:
        out.print("alerts: kept for ever (HUB_ALERT_RETENTION_DAYS=0)")
        return
    kinds = ", ".join(f"{k} {n}" for k, n in report.by_kind.items()) or "none"
    done = "would be removed" if report.dry_run else "removed"
    out.print(f"alerts resolved before {report.cutoff:%Y-%m-%d %H:%M} ({report.days} days): {report.alerts} "
              f"{done} ({kinds}), {report.feed_rows} change-feed row(s)"
              + (f"; audit record {report.audit_seq}" if report.audit_seq is not None else ""))


@keys_app.command("rewrap")
def keys_rewrap() -> None:
    """Re-wrap every live data key with the current master key (the first line of the key file).

    Run after putting a new master key first in HUB_PAYLOAD_MASTER_KEY_FILE with the old one on the
    next line; when it reports 0 left, remove the old key.
    """
    from hub.db.keyvault import SqlKeyVault, load_keyring

    settings = load_settings()
    try:
        vault = SqlKeyVault(_store(), load_keyring(settings))
        n = vault.rewrap()
    except HubError as exc:
        fail_with(exc)
    out.print(f"re-wrapped {n} data key(s) with master key {vault.keyring.current_id}")
