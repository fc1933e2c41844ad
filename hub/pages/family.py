"""The family's pages (a parent, a young person): what the hub holds about them in plain language, copies of
reports shared, who received what, when and why, and their consents, given, narrowed and withdrawn through a
form that writes a FHIR Consent by the code path of the consent route."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.errors import ConsentError
from consent.fhir import directive_to_fhir_dict
from hub.core.errors import Problem, ValidationError
from hub.db.store import Store, utcnow
from hub.family import summary
from hub.family.enrolment import new_id
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.pages import gather
from hub.pages.access import PageGate
from hub.pages.render import page
from hub.pages.session import check_csrf, require
from hub.sharing import consents, delivery
from hub.sharing.transparency import family_view
from hub.sharing.visibility import ReadView, copies_for, visible_items
from hub.wire.sealing import KeyVault

SOURCES = (("GET", "/v1/households/{household_id}/timeline"),
           ("GET", "/v1/households/{household_id}/family-copies"),
           ("GET", "/v1/households/{household_id}/transparency"))
CONSENTS = ("GET", "/v1/households/{household_id}/children/{child_id}/consents")
GIVE = ("POST", "/v1/households/{household_id}/children/{child_id}/consents")
SUMMARY = ("PUT", "/v1/households/{household_id}/children/{child_id}/summary")
WITHDRAW = ("DELETE", "/v1/households/{household_id}/children/{child_id}/consents/{directive_id}")
SECTORS = {"health": Sector.HEALTH, "social_care": Sector.SOCIAL_CARE, "education": Sector.EDUCATION}
PURPOSES = {"direct_care": Purpose.DIRECT_CARE, "care_coordination": Purpose.CARE_COORDINATION}


def own_view(store: Store, vault: KeyVault, principal: Principal, household_id: str, child_id: str | None = None,
             cursor: str | None = None) -> dict[str, Any]:
    """Everything the family page shows, each part through the read policy as its API route applies it."""
    view = ReadView.load(store, principal, [household_id])
    children = view.visible_children(household_id)

    def visible(items: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return visible_items(view, store, household_id, items)

    return {
        "children": [{"child_id": c, **dict(zip(("timeline", "later"), gather.timeline_page(
                          store, view, household_id, c, cursor=cursor if c == child_id else None), strict=True)),
                      "consents": consents.list_directives(store, household_id, c),
                      "summary": summary.read(store, vault, household_id, c)} for c in children],
        "copies": copies_for(view, household_id, delivery.family_copies(store, household_id)),
        "transparency": family_view(store, household_id, visible=visible),
    }


def directive_from_form(principal: Principal, child_id: str, decision: str, sectors: list[str],
                        purposes: list[str]) -> Directive:
    """The directive the form describes, in the name of the person signed in (a parent as the parents, a
    young person as themself); 422 naming the field for a choice the form does not offer."""
    problems = [Problem("decision", "choose to share or not to share")] if decision not in ("permit", "deny") else []
    problems += [Problem("sectors", f"no such service group: {s[:40]}") for s in sectors if s not in SECTORS]
    problems += [Problem("purposes", f"no such purpose: {p[:40]}") for p in purposes if p not in PURPOSES]
    if not sectors:
        problems.append(Problem("sectors", "choose at least one kind of service"))
    if problems:
        raise ValidationError(problems)
    young = principal.role == "young_person"
    return Directive(id=new_id("page"), child_id=child_id,
                     made_by=child_id if young else (principal.member or principal.subject),
                     made_by_role=Grantor.YOUNG_PERSON if young else Grantor.PARENT, made_at=utcnow(),
                     decision=DirectiveDecision(decision),
                     scope=Scope(sectors=frozenset(SECTORS[s] for s in sectors),
                                 purposes=frozenset(PURPOSES[p] for p in purposes) if purposes else None))


def family_pages(services: Services, gate: PageGate) -> APIRouter:
    router = APIRouter(tags=["pages"], include_in_schema=False)
    store = services.store

    def household_of(request: Request) -> str:
        """The signed-in family's household ('' for anyone else: the gate then refuses them as the API would)."""
        return require(request).household or ""

    @router.get("/family")
    async def own(request: Request, child_id: str = "", cursor: str = "") -> Response:
        household = household_of(request)
        me = await gate.enter(request, *SOURCES, household_id=household)
        data = await asyncio.to_thread(own_view, store, services.vault, me, household, child_id or None,
                                       cursor[:200] or None)
        for child in data["children"]:
            theirs = child["summary"] is not None and child["summary"].written_role == "young_person"
            child["may_write_summary"] = bool(await gate.allowed(me, SUMMARY, household_id=household,
                                                                 child_id=child["child_id"])) and (
                me.role == "young_person" or not theirs)
            child["may_consent"] = bool(await gate.allowed(me, GIVE, household_id=household,
                                                           child_id=child["child_id"]))
            if not await gate.allowed(me, CONSENTS, household_id=household, child_id=child["child_id"]):
                child["consents"] = []
        return page(request, "family_own.html", family=data, household_id=household)

    @router.post("/family/children/{child_id}/consents")
    async def give(request: Request, child_id: str, csrf: Annotated[str | None, Form()] = None,
                   decision: Annotated[str, Form()] = "", sectors: Annotated[list[str] | None, Form()] = None,
                   purposes: Annotated[list[str] | None, Form()] = None) -> Response:
        """Give or narrow consent: a FHIR Consent recorded as the consent route records it."""
        check_csrf(request, csrf)
        household = household_of(request)
        me = await gate.enter(request, GIVE, household_id=household)
        try:
            directive = directive_from_form(me, child_id, decision, sectors or [], purposes or [])
        except ConsentError as exc:
            raise ValidationError([Problem("consent", str(exc))]) from None
        await consents.grant(store, services.ingest, household, child_id, directive_to_fhir_dict(directive))
        return RedirectResponse("/family?saved=1#consents", status_code=303)

    @router.post("/family/children/{child_id}/consents/{directive_id}/withdraw")
    async def withdraw(request: Request, child_id: str, directive_id: str,
                       csrf: Annotated[str | None, Form()] = None) -> Response:
        check_csrf(request, csrf)
        household = household_of(request)
        await gate.enter(request, WITHDRAW, household_id=household)
        await consents.withdraw(store, services.ingest, household, child_id, directive_id,
                                "withdrawn by the family on their page")
        return RedirectResponse("/family?withdrawn=1#consents", status_code=303)

    @router.post("/family/children/{child_id}/summary")
    async def write_summary(request: Request, child_id: str, csrf: Annotated[str | None, Form()] = None,
                            needs: Annotated[str, Form()] = "", communication: Annotated[str, Form()] = "",
                            involved: Annotated[str, Form()] = "", shared: Annotated[str, Form()] = "") -> Response:
        """Tell it once: the family's summary of the child and whether the child's team sees it (the summary
        route's rule and code path)."""
        check_csrf(request, csrf)
        household = household_of(request)
        me = await gate.enter(request, SUMMARY, household_id=household, child_id=child_id)
        if shared not in ("yes", "no"):
            raise ValidationError([Problem("shared", "choose whether to share the summary")],
                                  title="Summary not saved")
        await asyncio.to_thread(summary.write, store, services.vault, household, child_id,
                                {"needs": needs, "communication": communication, "involved": involved},
                                shared=shared == "yes", actor=me.subject, role=me.role,
                                source=request.client.host if request.client else None)
        return RedirectResponse(f"/family?summary=1#summary-{child_id}", status_code=303)

    return router
