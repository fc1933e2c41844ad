"""The hub's web app: the JSON API (:func:`hub.api.app.create_app`) with the pages for people beside it.

Pages sign in by a session cookie (:mod:`hub.pages.session`); their routes are rows of the same policy
table as the API's (``page`` rules), and each page applies the rules of the API routes it draws from
(:class:`hub.pages.access.PageGate`). Errors on a page answer as a page, in the reader's language.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from hub.api.app import create_app
from hub.api.problems import hub_error_handler
from hub.core.errors import AuthError, HubError, OrganisationSignInError
from hub.ingest.relay import RELAY_EVERY
from hub.ingest.services import Services
from hub.pages import signin
from hub.pages.access import PageGate
from hub.pages.agency import agency_pages
from hub.pages.coordinator import coordinator_pages
from hub.pages.family import family_pages
from hub.pages.governance import governance_pages
from hub.pages.kpis import kpi_pages
from hub.pages.oidc import configured, oidc_pages
from hub.pages.problems import explain
from hub.pages.render import gettext, page
from hub.pages.session import COOKIE, check_csrf, session_key, sign_in, sign_out, signed_in

STATIC = Path(__file__).parent / "static"
HOME = {"coordinator": "/caseload", "parent": "/family", "young_person": "/family", "agency": "/inbox",
        "ig_officer": "/governance", "commissioner": "/kpis"}


def is_page(request: Request) -> bool:
    return "pages" in (getattr(request.scope.get("route"), "tags", None) or ())


def page_errors(app: FastAPI) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The app's error handler with the pages': an error on a page answers as a page (status as the API's), in
    the reader's language with the catalogue's words for its type (:mod:`hub.pages.problems`); any other
    request is answered by the handler the app already had (a problem document, or on ``/fhir`` an
    OperationOutcome)."""
    before = app.exception_handlers.get(HubError, hub_error_handler)

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HubError)
        if not is_page(request):
            answer = before(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        message, fields = explain(exc)
        return page(request, "error.html", status=exc.status, status_code=exc.status,
                    message=gettext(request, message), fields=[gettext(request, f) for f in fields],
                    sign_in=isinstance(exc, AuthError))

    return page_error


def start_pages(services: Services) -> APIRouter:
    router = APIRouter(tags=["pages"], include_in_schema=False)
    store = services.store
    settings = services.settings

    @router.get("/")
    async def start(request: Request) -> Response:
        """The start page: what the hub is, how to sign in, and the way to the reader's own pages."""
        me = signed_in(request)
        return page(request, "start.html", home=HOME.get(me.role) if me else None, oidc=configured(settings))

    @router.get("/sign-in/{token}")
    async def follow_link(request: Request, token: str) -> Response:
        """A sign-in link opens a page with a button, so a link checker that fetches it does not use it up."""
        usable = await asyncio.to_thread(signin.peek, store, token)
        return page(request, "sign_in.html", token=token, usable=usable, status=200 if usable else 401)

    @router.post("/sign-in/{token}")
    async def use_link(request: Request, token: str, csrf: Annotated[str | None, Form()] = None) -> Response:
        check_csrf(request, csrf)
        if settings.oidc_issuer:  # one source of identity in production, as for the API's tokens
            raise OrganisationSignInError("sign in with your organisation's account")
        principal = await asyncio.to_thread(signin.redeem, store, token)
        sign_in(request, principal, settings.session_hours)
        return RedirectResponse(HOME.get(principal.role, "/"), status_code=303)

    @router.post("/sign-out")
    async def leave(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
        check_csrf(request, csrf)
        sign_out(request)
        return RedirectResponse("/", status_code=303)

    return router


def create_site(services: Services, *, relay_interval: float = RELAY_EVERY, poll_interval: float = 0.5) -> FastAPI:
    """The API and the pages in one app (what `hub up`, `hub api` and `hub demo --serve` serve)."""
    app = create_app(services, relay_interval=relay_interval)
    gate = PageGate(services)
    app.add_middleware(SessionMiddleware, secret_key=session_key(services.settings), session_cookie=COOKIE,
                       max_age=int(services.settings.session_hours * 3600), same_site="lax",
                       https_only=services.settings.session_secure_cookie)
    app.add_exception_handler(HubError, page_errors(app))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(oidc_pages(services.settings, HOME))  # before /sign-in/{token}
    app.include_router(start_pages(services))
    app.include_router(coordinator_pages(services, gate, poll_interval))
    app.include_router(family_pages(services, gate))
    app.include_router(agency_pages(services, gate))
    app.include_router(governance_pages(services, gate))
    app.include_router(kpi_pages(services, gate))
    return app
