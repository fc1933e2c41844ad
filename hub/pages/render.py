"""Rendering: one set of Jinja2 templates for English and Welsh (gettext catalogues compiled by Babel in
``locales/``), dates in the reader's language, and the page furniture every template gets."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime, get_timezone
from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from hub.pages.session import csrf_token, language, signed_in

HERE = Path(__file__).parent
LOCALES = HERE / "locales"
TIMEZONE = get_timezone("Europe/London")
#: Every page: not cached (it holds a person's record), no script, style or frame from elsewhere and none
#: inline, forms only to the hub, no page of the hub inside another site's frame, no referrer (a sign-in
#: link's secret is in its URL).
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@cache
def translations(lang: str) -> NullTranslations:
    if lang == "en":
        return NullTranslations()
    return Translations.load(str(LOCALES), [lang], domain="messages")


def _as_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def N_(message: str) -> str:
    """Marks a message for the catalogue without translating it here."""
    return message


#: What the hub itself says on the pages (steps that unblock a report, states), as patterns: each is
#: translated with its parts (a service's name) kept, so the Welsh pages say them in Welsh too.
SAYINGS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), m) for p, m in (
    (r"ask the family for consent to share with (?P<service>.+)",
     N_("ask the family for consent to share with %(service)s")),
    (r"ask (?P<service>.+) to release the held report", N_("ask %(service)s to release the held report")),
    (r"ask (?P<service>.+) to write and issue the report", N_("ask %(service)s to write and issue the report")),
    (r"ask (?P<service>.+) to open it in the hub's inbox", N_("ask %(service)s to open it in the hub's inbox")),
    (r"check (?P<service>.+)'s webhook", N_("check %(service)s's webhook")),
    (r"report from (?P<service>.+)", N_("report from %(service)s")),
    (r"An item is held by (?P<service>.+)", N_("An item is held by %(service)s")),
    (r"in the agency's inbox, not yet read", N_("in the agency's inbox, not yet read")),
    (r"the share could not be delivered", N_("the share could not be delivered")),
    (r"details withheld", N_("details withheld")),
    (r"open the family page and acknowledge it", N_("open the family page and acknowledge it")),
))


def _saying(message: str) -> tuple[re.Pattern[str], str]:
    """A saying whose pattern is its own message, each ``%(name)s`` matching one part."""
    parts = re.split(r"%\((\w+)\)s", message)
    pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    return re.compile(pattern), message


#: What the coordination rules (hub/stream/rulesets/coordination-alerts.json: each alert's reason and step,
#: their ``{names}`` as ``%(names)s``), the statutory clocks (hub/stream/rulesets/statutory-clocks.yaml) and
#: the pages themselves say about what to do; tests/pages/test_pages_welsh.py checks the rule files still say
#: exactly these.
SAID_BY_RULES: tuple[str, ...] = (
    N_("%(count)s appointments missed within %(window_days)s days (%(services)s)"),
    N_("Contact the family to find out what stops them attending, and agree with the services involved how to "
       "make the next appointment possible"),
    N_("Referral to %(service)s on %(referred)s has had no answer for %(weeks)s weeks"),
    N_("Ask %(service)s whether the referral was received and when the family will hear"),
    N_("Discharged from %(service)s on %(discharged)s with no follow-up contact within %(days)s days"),
    N_("Check the discharge follow-up plan with the family and book the follow-up with the service named in it"),
    N_("%(service)s's report is not written and the %(appointment)s appointment is on %(start)s"),
    N_("Ask %(service)s to write and issue the report before %(start)s, or tell %(appointment)s it will not be "
       "there"),
    N_("Waiting for %(service)s since %(entered)s, longer than the estimate of %(estimate)s days"),
    N_("Ask %(service)s for a new date and tell the family what the wait now is"),
    N_("Caseload of %(count)s families is above the limit of %(limit)s"),
    N_("Agree with the team lead which families move to another coordinator"),
    N_("Reached %(age_years)s on %(due)s with no transition plan to adult services"),
    N_("Start transition planning with the family, the young person and adult services"),
    N_("%(title)s: the statutory deadline is %(deadline)s (%(source)s)"),
    N_("Ask the service responsible what stands in the way of meeting the %(deadline)s deadline, and record any "
       "exception the law allows"),
    N_("ask the service responsible what stands in the way of meeting the deadline"),
    N_("the service is not yet in the team around the child"),
    N_("Decision whether to carry out an EHC needs assessment"),
    N_("Final EHC plan issued (or notice that none will be)"),
    N_("EHC plan reviewed"),
    N_("Individual development plan decided and prepared by the school"),
    N_("Individual development plan decided and prepared by the local authority"),
)
SAYINGS += tuple(_saying(m) for m in SAID_BY_RULES)

#: The read policy's reasons (consent/rulesets/read-policy.json), by rule: a redacted entry says why in the
#: reader's language. tests/pages/test_pages_welsh.py checks these are the rule set's words.
READ_REASONS: dict[str, str] = {
    "READ-no-relationship": N_("The reader has no relationship to this family that gives access to its record; "
                               "agencies read what is shared with them in their inbox."),
    "READ-ig-investigation": N_("An information-governance officer investigating with a recorded reason; the read "
                                "is audited."),
    "READ-ig-no-reason": N_("Information-governance officers see clinical content only with a recorded "
                            "investigation reason."),
    "READ-sibling": N_("A young person sees their own record, not a brother's or sister's."),
    "READ-third-party": N_("The entry is about another person; only the person it is about may see it."),
    "READ-disclosure-hold": N_("A clinician has to tell the family in person before this is shown; it appears once "
                               "they release it."),
    "READ-hold-coordinator": N_("An item is held by the producing service until the clinician has told the family."),
    "READ-safeguarding-lead": N_("Information in this category is not shown to the family by default; the "
                                 "safeguarding lead decides what is shared."),
    "READ-young-person-refused": N_("The young person (16 or over, or assessed as competent) controls their own "
                                    "record and has refused their parents this information."),
    "READ-young-person-agreed": N_("The young person has agreed their parents may see this information."),
    "READ-young-person-restricted": N_("The young person controls their own record and has not agreed to their "
                                       "parents seeing information in this restricted category."),
    "READ-parent": N_("A parent with parental responsibility sees their child's record."),
    "READ-own-record": N_("A young person sees their own record."),
    "READ-own-record-not-yet": N_("Until 16, or until assessed as competent, a child's record is shown to their "
                                  "parents; the entry exists."),
    "READ-coordination-consent": N_("The family has agreed to share this with care coordination."),
    "READ-coordinator-restricted": N_("The information is in a restricted category and the family has not agreed, "
                                      "naming that category, to share it with care coordination."),
    "READ-coordinator-statutory": N_("The local authority's statutory duty (an EHC needs assessment or plan) covers "
                                     "this entry."),
    "READ-coordinator-no-consent": N_("The family has not agreed to share the details with care coordination; the "
                                      "entry exists."),
    "READ-default": N_("Nothing in the read policy allows this reader to see this entry."),
}


def say(lang: str, text: Any) -> str:
    """``text`` in the reader's language where it is one of the hub's sayings, else as it is; the parts a saying
    holds (a clock's title inside an alert's words) are said in the reader's language too where they can be."""
    words = "" if text is None else str(text)
    if lang == "en":
        return words
    for pattern, message in SAYINGS:
        found = pattern.fullmatch(words)
        if found:
            return translations(lang).gettext(message) % {k: say(lang, v) for k, v in found.groupdict().items()}
    return words


def reason(lang: str, entry: Any) -> str:
    """Why an entry is redacted, in the reader's language: the read policy's words for its rule."""
    code, text = entry.get("reason_code"), entry.get("reason")
    message = READ_REASONS.get(str(code))
    if lang == "en" or message is None or message != text:
        return "" if text is None else str(text)
    return translations(lang).gettext(message)


@cache
def environment(lang: str) -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(("html",)),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]

    def when(value: Any) -> str:
        t = _as_time(value)
        return "" if t is None else format_datetime(t, "d MMMM y, HH:mm", tzinfo=TIMEZONE, locale=lang)

    def day(value: Any) -> str:
        t = _as_time(value)
        return "" if t is None else format_date(t.astimezone(UTC).date(), "d MMMM y", locale=lang)

    env.filters["say"] = lambda text: say(lang, text)
    env.filters["reason"] = lambda entry: reason(lang, entry)
    env.filters["when"] = when
    env.filters["day"] = day
    env.filters["iso"] = lambda v: "" if _as_time(v) is None else _as_time(v).isoformat()  # type: ignore[union-attr]
    return env


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page in the reader's language, with who is signed in and the session's CSRF token."""
    lang = language(request)
    html = environment(lang).get_template(template).render(
        request=request, lang=lang, me=signed_in(request), csrf=csrf_token(request), path=request.url.path,
        **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def gettext(request: Request, message: str) -> str:
    return translations(language(request)).gettext(message)
