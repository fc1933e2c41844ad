"""English and Welsh from one set of templates: every message the templates say has a Welsh translation, the
compiled catalogue the pages load is the one committed beside it, and a page in Welsh is Welsh, dates too."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from hub.governance.auth import Principal
from hub.ingest.services import Services
from tests.pages.conftest import browser, project_logged, sign_in
from tests.pages.test_pages_coordinator import COORDINATOR, family

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "hub" / "pages" / "locales"
FIX = "run deploy/scripts/refresh-translations.sh and translate what it adds"


def test_every_message_of_the_pages_is_translated_into_welsh_and_compiled() -> None:
    method = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "True",
                                        "lstrip_blocks": "True"}}
    said = {m[2] if isinstance(m[2], str) else m[2][0]
            for m in extract_from_dir(str(ROOT / "hub" / "pages"), method, options_map=options)}
    po = read_po(io.BytesIO((LOCALES / "cy" / "LC_MESSAGES" / "messages.po").read_bytes()), locale="cy")
    translated = {m.id if isinstance(m.id, str) else m.id[0]: m for m in po if m.id}
    assert said <= set(translated), f"{sorted(said - set(translated))}: {FIX}"
    untranslated = [k for k in said if not all(translated[k].string) or translated[k].fuzzy]
    assert not untranslated, f"{untranslated}: {FIX}"
    mo = read_mo(io.BytesIO((LOCALES / "cy" / "LC_MESSAGES" / "messages.mo").read_bytes()))
    compiled = {m.id if isinstance(m.id, str) else m.id[0]: m.string for m in mo if m.id}
    def plain(text: object) -> object:
        return text if isinstance(text, str) else tuple(text)  # type: ignore[call-overload]

    stale = [k for k in said if plain(compiled.get(k, "")) != plain(translated[k].string)]
    assert not stale, f"the .mo is stale for {stale}: {FIX}"


@pytest.mark.broker
async def test_a_coordinator_reads_the_pages_in_welsh_with_welsh_dates(site_services: Services) -> None:
    await family(site_services, 9, consent=False)
    await asyncio.to_thread(project_logged, site_services, 0, datetime.now(UTC))
    async with browser(site_services) as client:
        await sign_in(client, site_services, COORDINATOR)
        r = await client.get("/caseload?lang=cy")
        assert r.status_code == 200 and '<html lang="cy"' in r.text
        assert "Eich llwyth achosion" in r.text and "Wedi'i ddal yn ôl" in r.text.replace("&#39;", "'")
        months = ("Ionawr", "Chwefror", "Mawrth", "Ebrill", "Mai", "Mehefin", "Gorffennaf", "Awst", "Medi",
                  "Hydref", "Tachwedd", "Rhagfyr")
        assert any(m in r.text for m in months)
        assert "Your caseload" not in r.text
        # what the hub itself says is Welsh too, with the service's own name kept
        assert "gofynnwch i&#39;r teulu am ganiatâd i rannu gyda Community paediatrics" in r.text
        assert "ask the family" not in r.text
        english = await client.get("/caseload?lang=en")
        assert "Your caseload" in english.text


async def test_a_refusal_is_a_page_in_the_readers_language(site_services: Services) -> None:
    async with browser(site_services) as client:
        r = await client.get("/caseload?lang=cy")
        assert r.status_code == 401 and "Mae angen i chi fewngofnodi" in r.text
        await sign_in(client, site_services, Principal("p-1", "parent", household="hh-1"))
        r = await client.get("/caseload")
        assert r.status_code == 403 and "Ni allwch wneud hyn" in r.text
