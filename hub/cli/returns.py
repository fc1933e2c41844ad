"""`hub returns …`: the DfE statutory returns a local authority makes from the events the hub holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.cli.common import fail, fail_with, load_settings, out
from hub.core.errors import HubError

returns_app = typer.Typer(help="DfE statutory returns built from the stream (SEN2, CIN census).", no_args_is_help=True)


@returns_app.command("sen2")
def sen2(
    la: Annotated[str, typer.Option("--la", help="The local authority's agency id (its events' agency).")],
    year: Annotated[int, typer.Option(help="Collection year: the census is the third Thursday of its January.")],
    by: Annotated[str, typer.Option("--by", help="Who makes the return (a user id, for the audit log).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the XML return.")],
) -> None:
    """Write the local authority's SEN2 return for a collection year in the DfE's XML layout.

    The file is checked against the SEN2 field definitions before it is written; names, UPN, sex
    and ethnicity are left for the authority's own system (the hub holds none). Audited as an export.
    """
    from hub.db.store import Store
    from hub.governance.audit import AuditLog
    from hub.governance.sen2 import SPECIFICATION, check
    from hub.governance.sen2_return import build_return

    try:
        store = Store.open(load_settings().effective_database_url)
        xml, persons = build_return(store, la, year)
    except HubError as exc:
        fail_with(exc)
    report = check(xml)
    if report.problems:
        fail("the return does not meet the " + SPECIFICATION + ": " + "; ".join(report.problems[:5]), 1)
    out_file.write_bytes(xml)
    AuditLog(store).record("export", actor=by, actor_role="cli", data_ref=f"SEN2 {year} {la}",
                           purpose="statutory_return", detail={"return": "SEN2", "year": year, "persons": persons})
    out.print(f"wrote the SEN2 {year} return of {la}: {persons} person(s) to {out_file}", highlight=False)


@returns_app.command("cin")
def cin(
    la: Annotated[str, typer.Option("--la", help="The local authority's agency id (its events' agency).")],
    year: Annotated[int, typer.Option(help="Collection year: the period 1 April of the year before to 31 March.")],
    by: Annotated[str, typer.Option("--by", help="Who makes the return (a user id, for the audit log).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the XML return.")],
) -> None:
    """Write the local authority's children in need census return for a collection year in the DfE's XML layout.

    One episode of need per referral to the authority's social-care services open in the period; the
    file is checked against the CIN census field definitions before it is written; LA child ids, UPN,
    sex and ethnicity are left for the authority's own system (the hub holds none). Audited as an export.
    """
    from hub.db.store import Store
    from hub.governance.audit import AuditLog
    from hub.governance.cin import SPECIFICATION, check
    from hub.governance.cin_return import build_return

    try:
        store = Store.open(load_settings().effective_database_url)
        xml, children = build_return(store, la, year)
    except HubError as exc:
        fail_with(exc)
    report = check(xml)
    if report.problems:
        fail("the return does not meet the " + SPECIFICATION + ": " + "; ".join(report.problems[:5]), 1)
    out_file.write_bytes(xml)
    AuditLog(store).record("export", actor=by, actor_role="cli", data_ref=f"CIN {year} {la}",
                           purpose="statutory_return", detail={"return": "CIN", "year": year, "children": children})
    out.print(f"wrote the CIN census {year} return of {la}: {children} child(ren) to {out_file}", highlight=False)
