"""`hub returns …`: the DfE statutory returns a local authority makes from the events the hub holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.common import fail, fail_with, load_settings, out
from hub.core.errors import HubError

returns_app = typer.Typer(help="DfE statutory returns built from the stream (SEN2, CIN census).", no_args_is_help=True)


@returns_app.command("sen2")
def sen2(
    la: Annotated[str, typer.Option("--la", help="The local authority's agency id (its events' agency).")],
    lea: Annotated[str, typer.Option("--lea", help="The authority's 3-digit DfE local-authority number (England).")],
    year: Annotated[int, typer.Option(help="Collection year: the census is the third Thursday of its January.")],
    by: Annotated[str, typer.Option("--by", help="Who makes the return (a user id, for the audit log).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the XML return.")],
) -> None:
    """Write the local authority's SEN2 return for a collection year in the DfE's XML layout.

    The file is checked against the SEN2 field definitions before it is written; names, UPN, sex
    and ethnicity are left for the authority's own system (the hub holds none). Audited as an export.
    """
    from hub.governance import sen2
    from hub.governance.sen2_return import build_return

    _write(sen2.SPECIFICATION, sen2.check, build_return, "SEN2", la, lea, year, by, out_file, "persons", "person(s)")


@returns_app.command("cin")
def cin(
    la: Annotated[str, typer.Option("--la", help="The local authority's agency id (its events' agency).")],
    lea: Annotated[str, typer.Option("--lea", help="The authority's 3-digit DfE local-authority number (England).")],
    year: Annotated[int, typer.Option(help="Collection year: the period 1 April of the year before to 31 March.")],
    by: Annotated[str, typer.Option("--by", help="Who makes the return (a user id, for the audit log).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the XML return.")],
) -> None:
    """Write the local authority's children in need census return for a collection year in the DfE's XML layout.

    One episode of need per referral to the authority's social-care services open in the period; the
    file is checked against the CIN census field definitions before it is written; LA child ids, UPN,
    sex and ethnicity are left for the authority's own system (the hub holds none). Audited as an export.
    """
    from hub.governance import cin
    from hub.governance.cin_return import build_return

    _write(cin.SPECIFICATION, cin.check, build_return, "CIN", la, lea, year, by, out_file, "children", "child(ren)")


def _write(specification: str, check: Callable[[bytes], Any], build: Callable[..., tuple[bytes, int]],
           kind: str, la: str, lea: str, year: int, by: str, out_file: Path, counted: str, noun: str) -> None:
    """Build a return, check it against its specification's field definitions, write it and audit the export."""
    from hub.db.store import Store
    from hub.governance.audit import AuditLog

    try:
        store = Store.open(load_settings().effective_database_url)
        xml, count = build(store, la, year, lea=lea)
    except HubError as exc:
        fail_with(exc)
    report = check(xml)
    if report.problems:
        fail("the return does not meet the " + specification + ": " + "; ".join(report.problems[:5]), 1)
    out_file.write_bytes(xml)
    AuditLog(store).record("export", actor=by, actor_role="cli", data_ref=f"{kind} {year} {la} LEA {lea}",
                           purpose="statutory_return", detail={"return": kind, "year": year, counted: count})
    title = "CIN census" if kind == "CIN" else kind
    out.print(f"wrote the {title} {year} return of {la} (LEA {lea}): {count} {noun} to {out_file}", highlight=False)
