"""The hub's one error hierarchy, and the one :class:`Problem` every refusal is made of.

Every error the hub raises on purpose derives from :class:`HubError`. Messages are written for the
person who has to act on them and never contain personal identifiers (NHS number, UPN, name, date
of birth): refer to records by the hub's event id or a pseudonymous subject.

Each class says how it is answered, as class attributes read by the one mapping in
``hub/api/problems.py`` (an RFC 9457 problem document) and by the command line (``hub/cli/common.py``,
a one-line message and an exit code): ``status`` (HTTP), ``slug`` and ``title`` (the problem
``type`` and ``title``), ``retryable`` (the same request may succeed later; answered with
``Retry-After``) and ``exit_code``. Unless shown otherwise below, an error is 500 ``internal``, not
retryable, exit code 2.

    HubError                     500 internal, exit 2
    ├── ConfigError              bad settings or environment; `hub up` prints it on one line, exits 2
    │   └── DatabaseSchemaBehindError  the database is not at this hub's schema revision: run `hub migrate`
    ├── SchemaError              a schema file or schema change is wrong
    │   ├── UnknownRecordTypeError   no schema for a record type
    │   └── IncompatibleSchemaError  a schema change breaks FULL_TRANSITIVE compatibility
    ├── SerdeError               bytes that cannot be turned into a record (dead-lettered)
    │   ├── CorruptRecordError       bad framing or bytes that do not decode
    │   ├── UnknownFingerprintError  framing is fine but the writer schema is unknown
    │   └── UnsealError              a sealed value failed authentication or its data key is missing
    ├── ErasedRecordError        a sealed value whose data key was shredded: erased, skipped (never dead-lettered)
    ├── ValidationError          422 validation: input refused; carries one Problem per bad field
    │   ├── RecordTooLargeError      413 too-large: a record over the per-record limit (never logged)
    │   └── ConflictError            409 conflict: a resend of an accepted version with other content
    ├── AuthError                401 unauthorised: no token, or a forged, expired or foreign one
    │   ├── SignInLinkUsedError      a page's one-time sign-in link expired or used
    │   ├── OrganisationSignInError  a one-time link on a hub whose people sign in with their organisation
    │   ├── SignInNotStartedError    a sign-in answer for a sign-in that did not start here
    │   └── ProviderRefusedError     the identity provider did not sign the person in to this hub
    ├── ForbiddenError           403 forbidden: the caller's role may not do this
    │   ├── LinksOnlyError           organisation sign-in asked of a hub that signs in with one-time links
    │   └── FormExpiredError         a page's form expired or did not come from this site
    ├── NotFoundError            404 not-found: asked for something that is not there (or not yours)
    ├── BrokerError              503 unavailable, retryable: the Kafka-protocol broker refused or could not be reached
    ├── StoreError               503 unavailable, retryable: the database refused or could not be reached
    ├── HubUnavailableError      503 unavailable, retryable: a client gave up on the hub after every retry
    ├── RecordsRefusedError      413 too-large: the broker refused logged records for good (dead-lettered)
    ├── AuditIntegrityError      the audit log failed verification
    └── LeaseLost                another process took the sharing cursor; the pass is rolled back
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

#: FHIR OperationOutcome issue codes for problems whose message says the thing is not supported.
_NOT_SUPPORTED = ("is not a FHIR R4 resource", "is not mapped")
UNAVAILABLE = "Temporarily unavailable; retry with the same request"
RETRY_AFTER = (("Retry-After", "2"),)


class HubError(Exception):
    """Base of every error the hub raises on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: str = "Internal error"
    retryable: ClassVar[bool] = False
    exit_code: ClassVar[int] = 2
    #: Extra HTTP response headers, as (name, value) pairs.
    headers: ClassVar[tuple[tuple[str, str], ...]] = ()


class ConfigError(HubError):
    """Settings or environment are wrong; the message says which and what to do."""


class DatabaseSchemaBehindError(ConfigError):
    """The database's schema is not the revision this hub's code needs (run ``hub migrate``)."""


class SchemaError(HubError):
    """A schema file or a schema change is wrong."""


class UnknownRecordTypeError(SchemaError):
    """No schema is known for a record type."""


class IncompatibleSchemaError(SchemaError):
    """A schema version is not compatible with an earlier released version."""


class SerdeError(HubError):
    """Bytes that cannot be turned into a record. Such messages are dead-lettered, never retried."""


class CorruptRecordError(SerdeError):
    """The framing is wrong or the payload does not decode with its writer schema."""


class UnknownFingerprintError(SerdeError):
    """The framing is valid but names a writer schema this hub does not know."""


class UnsealError(SerdeError):
    """A sealed value failed authentication (tampered, moved to another subject or event, wrong key), or
    names a data key this hub does not hold. Dead-lettered like corrupt bytes."""


class ErasedRecordError(HubError):
    """A sealed value whose subject's data key was shredded: the record was erased and cannot be read.

    Not a :class:`SerdeError`: readers skip and count such records; they are never dead-lettered.
    """


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a JSON pointer, FHIR path or CSV column) and what.

    ``row`` is the CSV/NDJSON line number (the CSV header is line 1), the JSON array index or the
    Bundle entry index of the record it concerns (``None`` for the payload as a whole); ``source``
    names the file (or other origin) the record came from.
    """

    location: str
    message: str
    row: int | None = None
    source: str | None = None
    #: the HTTP status of a refusal other than invalid input (409 conflict, 413 too large), else None
    status: int | None = None

    @property
    def detail(self) -> str:
        """The message, under its RFC 9457 name."""
        return self.message

    def __str__(self) -> str:
        if self.row is None and self.source is None:
            return f"{self.location}: {self.message}" if self.location else self.message
        where = self.source or ""
        if self.row is not None:
            where = f"{where}:{self.row}" if where else f"row {self.row}"
        return f"{where}: {self.location}: {self.message}" if self.location else f"{where}: {self.message}"

    def at(self, row: int | None, source: str | None = None) -> Problem:
        """The same problem tied to a record (``row``) and, when given, its ``source``."""
        return Problem(self.location, self.message, row, source if source is not None else self.source,
                       self.status)

    def in_payload(self) -> Problem:
        """The same problem for the payload as a whole: its row goes in front of the location (``[3]/x``)."""
        location = self.location if self.row is None else f"[{self.row}]{self.location}"
        return Problem(location, self.message, status=self.status)

    def as_json(self) -> dict[str, Any]:
        """The problem in a batch summary: row, location, detail and (when known) the file."""
        out: dict[str, Any] = {"row": self.row, "location": self.location, "detail": self.message}
        if self.source is not None:
            out["file"] = self.source
        return out

    def as_rfc9457(self, *, with_row: bool = False) -> dict[str, Any]:
        """An entry of an RFC 9457 problem document's ``errors``: pointer and detail (and the row)."""
        pointer = {"pointer": self.location, "detail": self.message}
        return {"row": self.row, **pointer} if with_row else pointer

    def as_issue(self, code: str | None = None, *, with_entry: bool = False) -> dict[str, Any]:
        """A FHIR OperationOutcome issue. ``code`` defaults to ``not-supported`` or ``invalid`` by the
        message; ``with_entry`` puts the Bundle entry (the row) in front of the diagnostics."""
        diagnostics = f"entry {self.row}: {self.message}" if with_entry and self.row is not None else self.message
        if code is None:
            code = "not-supported" if any(s in self.message for s in _NOT_SUPPORTED) else "invalid"
        return issue(code, diagnostics, self.location)


def issue(code: str, diagnostics: str, expression: str = "", severity: str = "error") -> dict[str, Any]:
    """One FHIR OperationOutcome issue."""
    out: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        out["expression"] = [expression]
    return out


#: pydantic error types whose message is written by a validator and may quote what it refused
_FREE_TEXT_ERRORS = frozenset({"value_error", "assertion_error"})
UNEXPECTED_FIELD = "a field that is not part of this resource or request (its name is not repeated)"


def plain_error(error: Mapping[str, Any]) -> tuple[tuple[Any, ...], str]:
    """Where a pydantic validation error is (its ``loc``) and which rule failed, never the refused value:
    the ``input`` is dropped, a field the caller made up is reported at its parent without its name (a
    key can be a name or a date of birth), and quoted text in a validator's message is left out."""
    loc = tuple(error.get("loc") or ())
    kind = str(error.get("type") or "")
    if kind == "extra_forbidden":
        return loc[:-1], UNEXPECTED_FIELD
    msg = str(error.get("msg") or "invalid value")
    if kind in _FREE_TEXT_ERRORS:
        msg = re.sub(r"'[^']*'|\"[^\"]*\"", "(the value)", msg)
    return loc, msg


class ValidationError(HubError):
    """Input was refused. ``problems`` names every bad field."""

    status = 422
    slug = "validation"

    def __init__(self, problems: list[Problem] | Problem | str, *, title: str = "Invalid input") -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.title = title
        super().__init__(f"{title}: " + "; ".join(str(p) for p in self.problems))


class RecordTooLargeError(ValidationError):
    """A record larger than the broker takes (``HUB_KAFKA_MAX_REQUEST_BYTES`` less headroom), refused unlogged."""

    status = 413
    slug = "too-large"


class ConflictError(ValidationError):
    """The same source record and version was accepted before with other content; the problems name its event id."""

    status = 409
    slug = "conflict"


class AuthError(HubError):
    """No token, or a token that is forged, expired or not for this hub (401)."""

    status = 401
    slug = "unauthorised"
    title = "Authentication required"
    headers = (("WWW-Authenticate", 'Bearer realm="familyhub"'),)


class ForbiddenError(HubError):
    """The caller's role may not use this route (403)."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


# The pages' own refusals: each has the ``problem`` type whose words a page shows (hub/pages/problems.py).

class SignInLinkUsedError(AuthError):
    """A page's one-time sign-in link has expired or has been used."""

    problem: ClassVar[str] = "link-used"


class OrganisationSignInError(AuthError):
    """A one-time link on a hub whose people sign in with their organisation's account."""

    problem: ClassVar[str] = "organisation-sign-in"


class SignInNotStartedError(AuthError):
    """An identity provider's answer for a sign-in that did not start here (or was already used)."""

    problem: ClassVar[str] = "sign-in-not-started"


class ProviderRefusedError(AuthError):
    """The identity provider did not sign the person in, or its answer could not be checked."""

    problem: ClassVar[str] = "provider-refused"


class LinksOnlyError(ForbiddenError):
    """Organisation sign-in asked of a hub that signs people in with one-time links."""

    problem: ClassVar[str] = "links-only"


class FormExpiredError(ForbiddenError):
    """A page's form expired or did not come from this site (CSRF)."""

    problem: ClassVar[str] = "form-expired"


class NotFoundError(HubError):
    """The thing asked for is not there, or the caller may not know whether it is."""

    status = 404
    slug = "not-found"
    title = "Not found"


class BrokerError(HubError):
    """The Kafka-protocol broker refused a request or could not be reached."""

    status = 503
    slug = "unavailable"
    title = UNAVAILABLE
    retryable = True
    headers = RETRY_AFTER


class StoreError(HubError):
    """The database refused a request or could not be reached."""

    status = 503
    slug = "unavailable"
    title = UNAVAILABLE
    retryable = True
    headers = RETRY_AFTER


class HubUnavailableError(HubError):
    """The hub kept failing (5xx, 429, timeouts) after every retry of a client."""

    status = 503
    slug = "unavailable"
    title = UNAVAILABLE
    retryable = True
    headers = RETRY_AFTER


class RecordsRefusedError(HubError):
    """The broker refused records for good (too large) after every other record was acknowledged.

    ``refused`` maps each refused record's index in the batch to the broker's reason.
    """

    status = 413
    slug = "too-large"
    title = "Record refused by the broker as too large"

    def __init__(self, refused: dict[int, str]) -> None:
        self.refused = refused
        reasons = ", ".join(sorted(set(refused.values())))
        super().__init__(f"the broker refused {len(refused)} record(s) as too large ({reasons})")


class IntegrityReport(Protocol):
    """What :class:`AuditIntegrityError` needs of a verification report."""

    @property
    def problems(self) -> Sequence[object]: ...


class AuditIntegrityError(HubError):
    """The audit log failed verification; ``report`` says where and how."""

    def __init__(self, report: IntegrityReport) -> None:
        self.report = report
        super().__init__(f"audit log failed verification: {len(report.problems)} problem(s); "
                         + "; ".join(str(p) for p in list(report.problems)[:5]))


class LeaseLost(HubError):
    """Another process took the sharing cursor while this one was deciding; its pass is rolled back."""
