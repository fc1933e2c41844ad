"""What a page says when it refuses or fails: words from this catalogue, chosen by the problem's type, in the
reader's language; never the error's own text (that is written for the API's callers and the logs, in English,
and may tell a reader more than the page should).

The type of a problem is the page refusal's own (``problem`` of the pages' errors in hub/core/errors.py) or
else the error class's ``slug`` (``not-found``, ``forbidden``, ...). Every refusal of the same type reads the
same, so a page asking for another family's household and one asking for a household that does not exist
answer alike. Fields
of a page's form that were refused are named by their ``Problem.location``, each with its own words.
"""

from __future__ import annotations

from hub.core.errors import HubError, ValidationError


def N_(message: str) -> str:
    """Marks a message for the catalogue without translating it here."""
    return message


#: the words of each problem type
MESSAGES: dict[str, str] = {
    "unauthorised": N_("Sign in to see this page."),
    "forbidden": N_("Your role does not let you see this page or do this."),
    "not-found": N_("If you typed the web address, check it is correct."),
    "validation": N_("Some of what you entered could not be used. Check it and try again."),
    "conflict": N_("This has already been recorded differently. Reload the page to see what is recorded now."),
    "too-large": N_("What you sent is too large for the hub to take."),
    "unavailable": N_("The hub cannot answer just now. Try again in a minute."),
    "internal": N_("Something went wrong in the hub. Try again later; if it happens again, tell your service desk."),
    "link-used": N_("This sign-in link has expired or has been used: ask for a new one."),
    "organisation-sign-in": N_("Sign in with your organisation's account."),
    "links-only": N_("This hub signs people in with one-time links, not with an organisation's account."),
    "sign-in-not-started": N_("This sign-in did not start here or has already been used: sign in again."),
    "provider-refused": N_("Your organisation's account did not sign you in to this hub: it gave no role this hub "
                           "knows, or its answer could not be checked. Try again, or ask your administrator."),
    "form-expired": N_("The form has expired or did not come from this site: go back, reload and try again."),
}

#: the words for a refused field of a page's form, by the field's name
FIELDS: dict[str, str] = {
    "start": N_("Give the start as a date, YYYY-MM-DD."),
    "end": N_("Give the end as a date, YYYY-MM-DD, after the start."),
    "decision": N_("Choose to share or not to share."),
    "sectors": N_("Choose at least one kind of service, from the list."),
    "purposes": N_("Choose the purposes from the list."),
    "consent": N_("This choice cannot be recorded for this child: check who may decide for them."),
    "reason": N_("Give the reason in at least 10 characters."),
    "shared": N_("Choose whether to share the summary."),
    "needs": N_("Write what your child needs in at most 2000 characters."),
    "communication": N_("Write how your child communicates in at most 2000 characters."),
    "involved": N_("Write who is involved in at most 2000 characters."),
}


def problem_type(exc: HubError) -> str:
    """The type a page says a problem by: the page refusal's own, else the error class's slug."""
    kind = getattr(exc, "problem", None) or exc.slug
    return kind if kind in MESSAGES else "internal"


def explain(exc: HubError) -> tuple[str, list[str]]:
    """The catalogue's message for ``exc`` and the message of each refused field of a page's form (untranslated:
    the page says them in the reader's language)."""
    fields: list[str] = []
    if isinstance(exc, ValidationError):
        fields = list(dict.fromkeys(FIELDS[p.location] for p in exc.problems if p.location in FIELDS))
    return MESSAGES[problem_type(exc)], fields
