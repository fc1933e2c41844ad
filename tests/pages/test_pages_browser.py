"""The pages in a real browser (Playwright driving Debian's Chromium) through `hub demo --serve`, with its real
broker, workers and database: the coordinator sees the withheld report before the appointment with the step
that unblocks it, the parent gives consent on their page with the keyboard alone, the coordinator's page
updates live, the paediatric service acknowledges in its inbox, IG verifies the chain, a young person reads
their page in Welsh and is refused a coordinator's page in Welsh, the agency opens the team around a child,
the parent writes and shares the child's summary, a commissioner reads the KPI charts;
axe-core finds no WCAG 2.2 A/AA violation on any page visited.

Skipped, with the reason, where no Chromium is installed (`apt-get install chromium`; .ci/run does). With
HUB_SCREENSHOTS=1 the journey saves the README's screenshots (docs/screenshots/) from the demo data.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.kafka.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extras)")
pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found: apt-get install -y chromium")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`hub demo --serve` on a free port in a fresh data directory; its printed sign-in links by person."""
    where = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {**os.environ, "HUB_DATA_DIR": str(where / ".hub"), "HUB_API_PORT": str(port), "COLUMNS": "250",
           "HUB_LOG_LEVEL": "WARNING"}
    env.pop("HUB_DATABASE_URL", None)
    env.pop("HUB_KAFKA_BOOTSTRAP", None)
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "demo", "--serve"], cwd=where, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        out.append(line)
        if "serving the API and the pages" in line:
            break
    text = "".join(out)
    links = re.findall(r"^\s+(\S[^\n]*):\n\s+(http://\S+/sign-in/\S+)", text, re.M)
    if len(links) < 6:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail(f"the demo printed no sign-in links:\n{text[-3000:]}")
    waiting = re.search(r"Family (household-rhys-\d+) waits for consent", text)
    assert waiting
    while time.monotonic() < deadline:  # the line is printed just before the server listens
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield {"base": f"http://127.0.0.1:{port}", "links": [u for _, u in links], "waiting": waiting.group(1)}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def accessible(page: Any, what: str) -> None:
    """axe-core's WCAG 2.2 A and AA rules find nothing on the page as it is now."""
    if not page.evaluate("typeof axe !== 'undefined'"):  # evaluated by the browser's devtools, past the CSP
        page.evaluate(AXE.read_text() + "\n;true")
    found = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
                          ".then(r => r.violations.map(v => [v.id, v.help, v.nodes.map(n => n.target.join(' '))]))",
                          WCAG)
    assert found == [], f"{what}: {found}"


def shot(page: Any, name: str) -> None:
    if os.environ.get("HUB_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1100, "height": 900})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


ERRORS: list[str] = []  # the browser's console errors and uncaught exceptions (a refused script, say)


def sign_in(browser: Any, link: str) -> Any:
    page = browser.new_context(locale="en-GB").new_page()
    page.on("console", lambda m: ERRORS.append(f"{page.url}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: ERRORS.append(f"{page.url}: {e}"))
    page.goto(link)
    page.get_by_role("button", name=re.compile("Sign in|Mewngofnodi")).click()
    page.wait_for_load_state()
    return page


def test_each_person_s_journey_through_the_pages(demo: dict[str, Any]) -> None:
    coordinator_link, parent_link, young_link, agency_link, ig_link = demo["links"][:5]
    household = demo["waiting"]
    step = "ask the family for consent to share with Community paediatrics"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        coordinator = sign_in(browser, coordinator_link)
        assert coordinator.url.endswith("/caseload")
        card = coordinator.locator("section", has_text=household)
        assert "Withheld" in card.inner_text() and step in card.inner_text()
        accessible(coordinator, "caseload")
        shot(coordinator, "caseload")
        card.get_by_role("link", name=re.compile(household)).click()
        coordinator.wait_for_selector("#live-content")
        attention = coordinator.locator("#live-content")
        assert step in attention.inner_text()
        coordinator.evaluate("window.notReloaded = true")
        accessible(coordinator, "family page")
        shot(coordinator, "family-page")

        parent = sign_in(browser, parent_link)
        assert parent.url.endswith("/family")
        accessible(parent, "the family's own page")
        shot(parent, "family-own-view")
        # the consent form with the keyboard alone: tab to the first choice, choose, tab on, submit
        def tab_to(test: str) -> None:  # Tab from where the focus is until ``test`` holds for it
            for _ in range(80):
                parent.keyboard.press("Tab")
                if parent.evaluate(f"(e => {test})(document.activeElement)"):
                    return
            raise AssertionError(f"the keyboard never reached {test}")

        tab_to("e.name === 'decision'")  # from the top of the page: the radio group is one tab stop
        parent.keyboard.press("Space")
        assert parent.evaluate("document.activeElement.value") == "permit"
        tab_to("e.value === 'health'")
        parent.keyboard.press("Space")
        tab_to("e.textContent.trim() === 'Save your choice'")
        parent.keyboard.press("Enter")
        parent.wait_for_url(re.compile(r"/family\?saved=1"))
        assert "Your choice is recorded" in parent.inner_text("body")
        accessible(parent, "the family's page after consenting")
        # tell it once: the summary of the child, shared with the team
        parent.get_by_label("What your child needs").first.fill("Tube fed at noon; loud rooms upset him")
        parent.get_by_label("Share it with the care coordinator and the services working with my child").first.check()
        parent.get_by_role("button", name="Save your summary").first.click()
        parent.wait_for_url(re.compile(r"/family\?summary=1"))
        assert "Your summary is saved" in parent.inner_text("body")
        accessible(parent, "the family's page with its summary")

        # the coordinator's page changes by itself once the hub has shared the report
        coordinator.wait_for_function(
            "s => { const t = document.getElementById('live-content').innerText;"
            " return !t.includes(s) && /Not read yet|On its way|Shared/.test(t); }", arg=step, timeout=30000)
        assert coordinator.evaluate("window.notReloaded === true")  # updated in place, not reloaded

        agency = sign_in(browser, agency_link)
        assert agency.url.endswith("/inbox")
        accessible(agency, "inbox")
        before = agency.get_by_role("button", name=re.compile("Acknowledge")).count()
        assert before > 0
        agency.get_by_role("button", name=re.compile("Acknowledge")).first.click()
        agency.wait_for_url(re.compile(r"/inbox\?acknowledged=1"))
        assert agency.get_by_role("button", name=re.compile("Acknowledge")).count() == before - 1
        agency.get_by_role("link", name=re.compile("The team around child")).first.click()
        agency.wait_for_url(re.compile(r"/inbox/children/[^/]+/team$"))
        assert "The team around child" in agency.inner_text("h1")
        accessible(agency, "the team around a child the agency serves")

        ig = sign_in(browser, ig_link)
        ig.get_by_role("button", name="Verify the audit chain now").click()
        ig.wait_for_url(re.compile(r"verify=1"))
        assert "The audit chain verifies" in ig.inner_text("body")
        accessible(ig, "information governance")
        commissioner = sign_in(browser, demo["links"][5])  # the KPI charts are a commissioner's home
        assert commissioner.url.endswith("/kpis")
        assert "Coordination KPIs" in commissioner.inner_text("h1")
        assert commissioner.locator("svg.hub-chart").count() > 0
        accessible(commissioner, "the KPI charts")
        shot(commissioner, "kpis")

        young = sign_in(browser, young_link)
        young.get_by_role("link", name="Cymraeg").click()
        young.wait_for_load_state()
        assert young.locator("html").get_attribute("lang") == "cy"
        assert "Gwybodaeth eich teulu" in young.inner_text("h1")
        accessible(young, "the young person's page in Welsh")
        refused = young.goto(demo["base"] + "/caseload")  # a coordinator's page: refused, in Welsh
        assert refused is not None and refused.status == 403
        assert "Ni allwch wneud hyn" in young.inner_text("h1") and young.locator("html").get_attribute("lang") == "cy"
        accessible(young, "a refusal in Welsh")
        ERRORS[:] = [e for e in ERRORS if not (e.startswith(young.url) and "403" in e)]  # the refusal itself
        browser.close()
    assert ERRORS == []
