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


def say(lang: str, text: Any) -> str:
    """``text`` in the reader's language where it is one of the hub's sayings, else as it is."""
    words = "" if text is None else str(text)
    if lang == "en":
        return words
    for pattern, message in SAYINGS:
        found = pattern.fullmatch(words)
        if found:
            return translations(lang).gettext(message) % found.groupdict()
    return words


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
