"""English and Welsh from one set of templates: every message the templates say has a Welsh translation, the
compiled catalogue the pages load is the one committed beside it, and a page in Welsh is Welsh, dates too."""

from __future__ import annotations

import asyncio
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.pages.gather import CLOCK_STEP
from hub.pages.render import READ_REASONS, SAID_BY_RULES, reason, say, translations
from tests.pages.conftest import browser, project_logged, sign_in
from tests.pages.test_pages_coordinator import COORDINATOR, family

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "hub" / "pages" / "locales"
FIX = "run deploy/scripts/refresh-translations.sh and translate what it adds"


def _key(context: str | None, msgid: object) -> tuple[str | None, str]:
    """A message as the catalogue knows it: its context (``pgettext``) and its (singular) id."""
    return context, msgid if isinstance(msgid, str) else msgid[0]  # type: ignore[index]


def _strings(text: object) -> tuple[str, ...]:
    return (text,) if isinstance(text, str) else tuple(text)  # type: ignore[call-overload]


def test_every_message_of_the_pages_is_translated_into_welsh_and_compiled() -> None:
    """Every message the templates and modules say, with its context, has a Welsh translation (no empty msgstr,
    every plural form, nothing fuzzy or obsolete), and the compiled .mo holds exactly the .po's translations."""
    method = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "True",
                                        "lstrip_blocks": "True"}}
    said = {_key(m[4], m[2]) for m in extract_from_dir(str(ROOT / "hub" / "pages"), method, options_map=options)}
    po = read_po(io.BytesIO((LOCALES / "cy" / "LC_MESSAGES" / "messages.po").read_bytes()), locale="cy")
    translated = {_key(m.context, m.id): m for m in po if m.id}
    assert said <= set(translated), f"{sorted(said - set(translated), key=str)}: {FIX}"
    assert not po.obsolete, f"obsolete messages {sorted(po.obsolete)}: {FIX}"
    untranslated = [k for k, m in translated.items()
                    if not _strings(m.string) or not all(s.strip() for s in _strings(m.string)) or m.fuzzy]
    assert not untranslated, f"{untranslated}: {FIX}"
    assert len(translated) >= 334  # the catalogue as counted when every message had its Welsh
    mo = read_mo(io.BytesIO((LOCALES / "cy" / "LC_MESSAGES" / "messages.mo").read_bytes()))
    compiled = {_key(m.context, m.id): _strings(m.string) for m in mo if m.id}
    stale = [k for k, m in translated.items() if compiled.get(k) != _strings(m.string)]
    assert not stale and set(compiled) == set(translated), f"the .mo is stale for {stale}: {FIX}"


def test_words_with_two_meanings_have_a_context_and_their_own_welsh() -> None:
    """"From" a sender ("Oddi wrth") is not "from" the start of a period ("O")."""
    cy = translations("cy")
    assert cy.pgettext("sender", "From") == "Oddi wrth"
    assert cy.pgettext("sender", "From %(who)s") == "Oddi wrth %(who)s"
    assert cy.pgettext("start of a period", "From") == "O"
    templates = ROOT / "hub" / "pages" / "templates"
    assert 'pgettext("start of a period", "From")' in (templates / "kpis.html").read_text()
    assert 'pgettext("sender", "From %(who)s"' in (templates / "inbox.html").read_text()


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


def test_the_rule_files_say_exactly_what_the_pages_translate() -> None:
    """The read policy's reasons and the coordination rules' and clocks' words are translated by their English
    text, so a rule file that changes its words must change the pages' copy (and its Welsh) with it."""
    policy = json.loads((ROOT / "consent" / "rulesets" / "read-policy.json").read_text())
    assert {r["id"]: r["reason"] for r in policy["rules"]} == READ_REASONS
    rules = json.loads((ROOT / "hub" / "stream" / "rulesets" / "coordination-alerts.json").read_text())["rules"]
    for rule in rules:
        for text in (rule["reason"], rule["step"]):
            assert re.sub(r"\{(\w+)\}", r"%(\1)s", text) in SAID_BY_RULES, text
    clocks = yaml.safe_load((ROOT / "hub" / "stream" / "rulesets" / "statutory-clocks.yaml").read_text())["clocks"]
    assert {c["title"] for c in clocks} <= set(SAID_BY_RULES)
    assert CLOCK_STEP in SAID_BY_RULES
    # a saying inside a saying: the clock alert's words with the clock's title, both in Welsh
    alert = "EHC plan reviewed: the statutory deadline is 06 Jan 2027 (Children and Families Act 2014 s.44(1))"
    assert say("cy", alert) == ("Cynllun EHC wedi'i adolygu: y dyddiad cau statudol yw 06 Jan 2027 "
                                "(Children and Families Act 2014 s.44(1))")
    step = "Ask Speech and language therapy whether the referral was received and when the family will hear"
    assert say("cy", step).startswith("Gofynnwch i Speech and language therapy a gafodd yr atgyfeiriad")
    redacted = {"reason_code": "READ-coordinator-no-consent", "reason": READ_REASONS["READ-coordinator-no-consent"]}
    assert reason("cy", redacted).startswith("Nid yw'r teulu wedi cytuno")
    assert reason("cy", {**redacted, "reason": "other words"}) == "other words"  # never a wrong translation


@pytest.mark.broker
async def test_a_redacted_entry_says_why_in_welsh(site_services: Services) -> None:
    j = await family(site_services, 10, consent=False)
    await asyncio.to_thread(project_logged, site_services, 0, datetime.now(UTC))
    async with browser(site_services) as client:
        await sign_in(client, site_services, COORDINATOR)
        english = (await client.get(f"/households/{j.household_id}?lang=en")).text
        welsh = (await client.get(f"/households/{j.household_id}?lang=cy")).text.replace("&#39;", "'")
    reasons = [READ_REASONS[code] for code in READ_REASONS if READ_REASONS[code] in english.replace("&#39;", "'")]
    assert reasons, "the family page shows a redacted entry with its reason"
    for text in reasons:
        assert text not in welsh and translations("cy").gettext(text) in welsh
