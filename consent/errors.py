"""The consent library's own error hierarchy (independent of the hub package).

Messages say what is wrong and how to fix it; they never contain personal identifiers (dates of
birth, names). Directive / override ids are pseudonymous and may appear.

    ConsentError
    ├── InvalidDirectiveError   a directive (or one of its exceptions) is malformed or not allowed
    ├── InvalidOverrideError    a safeguarding override lacks a named person, justification or limits
    ├── InvalidRequestError     the information / recipient / time given for a decision is malformed
    ├── RuleSetError            the packaged rule-set data is missing or malformed
    └── FhirMappingError        a FHIR Consent cannot be converted to a directive
"""

from __future__ import annotations


class ConsentError(Exception):
    """Base of every error the consent library raises on purpose."""


class InvalidDirectiveError(ConsentError):
    """A directive or one of its nested exceptions is malformed or may not be made by its author."""


class InvalidOverrideError(ConsentError):
    """A safeguarding override lacks a named person, a written justification or a time limit."""


class InvalidRequestError(ConsentError):
    """The information, recipient or time given for a decision is malformed."""


class RuleSetError(ConsentError):
    """The rule-set data file is missing, unreadable or incomplete."""


class FhirMappingError(ConsentError):
    """A FHIR Consent resource cannot be mapped to (or from) a directive."""
