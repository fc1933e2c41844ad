"""The hub's one error hierarchy.

Every error the hub raises on purpose derives from :class:`HubError`. Messages are written for the
person who has to act on them and never contain personal identifiers (NHS number, UPN, name, date
of birth): refer to records by the hub's event id or a pseudonymous subject.

    HubError
    ├── ConfigError              bad settings or environment; `hub up` prints it on one line, exits 2
    ├── SchemaError              a schema file or schema change is wrong
    │   ├── UnknownRecordTypeError   no schema for a record type
    │   └── IncompatibleSchemaError  a schema change breaks FULL_TRANSITIVE compatibility
    ├── SerdeError               bytes that cannot be turned into a record (dead-lettered)
    │   ├── CorruptRecordError       bad framing or bytes that do not decode
    │   ├── UnknownFingerprintError  framing is fine but the writer schema is unknown
    │   └── UnsealError              a sealed value failed authentication or its data key is missing
    ├── ErasedRecordError        a sealed value whose data key was shredded: erased, skipped (never dead-lettered)
    ├── ValidationError          input refused; carries one Problem per bad field
    ├── BrokerError              the Kafka-protocol broker refused or could not be reached
    ├── StoreError               the database refused or could not be reached
    └── NotFoundError            asked for something that is not there (or not yours)
"""

from __future__ import annotations

from dataclasses import dataclass


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """Settings or environment are wrong; the message says which and what to do."""


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
    """One thing wrong with an input: where (a JSON pointer, FHIR path or CSV column) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ValidationError(HubError):
    """Input was refused. ``problems`` names every bad field."""

    def __init__(self, problems: list[Problem] | Problem | str, *, title: str = "Invalid input") -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.title = title
        super().__init__(f"{title}: " + "; ".join(str(p) for p in self.problems))


class BrokerError(HubError):
    """The Kafka-protocol broker refused a request or could not be reached."""


class StoreError(HubError):
    """The database refused a request or could not be reached."""


class NotFoundError(HubError):
    """The thing asked for is not there, or the caller may not know whether it is."""
