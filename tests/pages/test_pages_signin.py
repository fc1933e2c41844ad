"""Signing in to the pages: the start page, one-time links, the session cookie, CSRF on every form."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub.db.schema import page_signins
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.pages import signin
from tests.pages.conftest import browser, csrf_of, sign_in

COORDINATOR = Principal("cc-pages", "coordinator")


async def test_the_start_page_answers_at_the_root(site_services: Services) -> None:
    async with browser(site_services) as client:
        r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Family information hub" in r.text and "sign-in link" in r.text
    assert '<html lang="en"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"] and "<script>" not in r.text
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"


async def test_a_sign_in_link_works_once_and_sets_a_secure_http_only_cookie(site_services: Services) -> None:
    token = signin.issue(site_services.store, COORDINATOR, 15)
    async with browser(site_services) as client:
        page = await client.get(f"/sign-in/{token}")
        assert page.status_code == 200  # following the link alone signs nobody in (link checkers fetch it)
        assert (await client.get("/caseload")).status_code == 401
        r = await client.post(f"/sign-in/{token}", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/caseload"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
        assert (await client.get("/caseload")).status_code == 200
    with site_services.store.engine.connect() as conn:  # stored only as its hash
        stored = conn.execute(sa.select(page_signins.c.token_hash)).scalars().all()
    assert token not in stored and len(stored) == 1 and len(stored[0]) == 64
    async with browser(site_services) as other:
        again = await other.get(f"/sign-in/{token}")
        assert again.status_code == 401 and "expired or has been used" in again.text
        fresh = await other.get(f"/sign-in/{signin.issue(site_services.store, COORDINATOR, 15)}")
        used = await other.post(f"/sign-in/{token}", data={"csrf": csrf_of(fresh.text)})
        assert used.status_code == 401 and "expired or has been used" in used.text
        assert (await other.get("/caseload")).status_code == 401


async def test_an_expired_link_signs_nobody_in(site_services: Services) -> None:
    token = signin.issue(site_services.store, COORDINATOR, 15)
    with site_services.store.engine.begin() as conn:
        conn.execute(page_signins.update().values(expires_at=page_signins.c.created_at - timedelta(seconds=1)))
    async with browser(site_services) as client:
        page = await client.get(f"/sign-in/{token}")
        assert page.status_code == 401 and "expired" in page.text
        fresh = await client.get(f"/sign-in/{signin.issue(site_services.store, COORDINATOR, 15)}")
        r = await client.post(f"/sign-in/{token}", data={"csrf": csrf_of(fresh.text)})
        assert r.status_code == 401 and "expired" in r.text
        assert (await client.get("/caseload")).status_code == 401


async def test_forms_without_the_session_token_are_refused_and_change_nothing(site_services: Services) -> None:
    token = signin.issue(site_services.store, COORDINATOR, 15)
    async with browser(site_services) as client:
        await client.get(f"/sign-in/{token}")
        forged = await client.post(f"/sign-in/{token}", data={})
        assert forged.status_code == 403 and "did not come from this site" in forged.text
        assert signin.peek(site_services.store, token)  # the link is still unused
        await sign_in(client, site_services, COORDINATOR)
        out = await client.post("/sign-out", data={"csrf": "not-the-token"})
        assert out.status_code == 403
        assert (await client.get("/caseload")).status_code == 200  # still signed in
        home = await client.get("/")
        out = await client.post("/sign-out", data={"csrf": csrf_of(home.text)})
        assert out.status_code == 303
        assert (await client.get("/caseload")).status_code == 401


async def test_without_a_session_pages_ask_to_sign_in_and_the_api_still_wants_a_token(site_services: Services) -> None:
    async with browser(site_services) as client:
        for path in ("/caseload", "/households/hh-x", "/family"):
            r = await client.get(path)
            assert r.status_code == 401 and "You need to sign in" in r.text, path
        await sign_in(client, site_services, COORDINATOR)
        api = await client.get("/v1/coordinators/cc-pages/caseload")  # a session cookie is not a bearer token
        assert api.status_code == 401 and api.headers["content-type"].startswith("application/problem+json")


async def test_the_language_switch_turns_the_pages_welsh(site_services: Services) -> None:
    async with browser(site_services) as client:
        r = await client.get("/?lang=cy")
        assert '<html lang="cy"' in r.text and 'hreflang="en"' in r.text
        assert '<html lang="cy"' in (await client.get("/")).text  # kept for the session


async def test_every_page_is_a_row_of_the_policy_table(site_services: Services) -> None:
    from fastapi.routing import APIRoute

    from hub.governance.auth import POLICY
    from hub.pages.site import create_site

    def walk(routes: list[Any]) -> list[APIRoute]:  # included routers are nested in this FastAPI
        out: list[APIRoute] = []
        for r in routes:
            out += [r] if isinstance(r, APIRoute) else walk(getattr(getattr(r, "original_router", None), "routes", []))
        return out

    served = {(m, r.path) for r in walk(create_site(site_services).routes) if "pages" in r.tags for m in r.methods}
    assert served and all(POLICY[k].page for k in served), [k for k in served if k not in POLICY]
    assert {k for k, rule in POLICY.items() if rule.page} == served  # no row for a page that is not there


def test_hub_signin_link_prints_a_link_that_signs_in_once(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hub.cli.main import app as cli
    from hub.db.store import Store

    env = {"HUB_DATA_DIR": str(tmp_path / "data"), "HUB_PSEUDONYM_KEY": "k" * 32, "HUB_API_PORT": "8099"}
    r = CliRunner().invoke(cli, ["signin-link", "--role", "parent", "--subject", "parent-9",
                                 "--household", "hh-9"], env=env)
    assert r.exit_code == 0, r.output
    link = r.output.strip()
    assert link.startswith("http://127.0.0.1:8099/sign-in/")
    store = Store.open(f"sqlite:///{tmp_path / 'data' / 'hub.db'}")
    token = link.rsplit("/", 1)[1]
    assert signin.redeem(store, token) == Principal("parent-9", "parent", household="hh-9")
    refused = CliRunner().invoke(cli, ["signin-link", "--role", "parent", "--subject", "p"],
                                 env={**env, "HUB_OIDC_ISSUER": "https://idp.test", "HUB_OIDC_JWKS_URL": "http://x"})
    assert refused.exit_code != 0 and "identity provider" in refused.output


def test_the_wheel_ships_every_template_asset_and_catalogue() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["hub"]
    shipped = {p for pattern in patterns for p in (root / "hub").glob(pattern) if p.is_file()}
    needed = {p for d in ("templates", "static", "locales") for p in (root / "hub" / "pages" / d).rglob("*")
              if p.is_file()}
    assert needed - shipped == set()
