"""The one error tree: every HubError is drawn in hub/core/errors.py and says how it is answered."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re

import pytest

import connectors
import hub
from hub.api.problems import problem_of
from hub.core import errors
from hub.core.errors import (
    AuthError,
    BrokerError,
    ConfigError,
    ForbiddenError,
    HubError,
    NotFoundError,
    Problem,
    StoreError,
    ValidationError,
)

SKIP = ("hub.db.migrations", "hub.cli.__main__")


def _import_everything() -> None:
    for package in (hub, connectors):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.startswith(SKIP):
                importlib.import_module(info.name)


def _subclasses(cls: type[HubError]) -> list[type[HubError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _drawn_tree() -> dict[str, str | None]:
    """Class name -> parent class name, as drawn in the errors module's docstring."""
    doc = errors.__doc__ or ""
    tree: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*[│├└─ ]*)([A-Z]\w+)(\s|$)", line)
        if match is None or not match.group(2).endswith(("Error", "Lost")):
            continue
        depth, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        tree[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return tree


def test_every_hub_error_is_drawn_under_its_parent_and_lives_in_core() -> None:
    _import_everything()
    tree = _drawn_tree()
    assert tree["HubError"] is None
    for cls in _subclasses(HubError):
        if cls.__module__.startswith("tests"):
            continue
        assert cls.__module__ == "hub.core.errors", f"{cls.__name__} is defined in {cls.__module__}"
        assert cls.__name__ in tree, f"{cls.__name__} is not drawn in hub/core/errors.py"
        assert tree[cls.__name__] == cls.__bases__[0].__name__, f"{cls.__name__} is drawn under the wrong parent"


def test_every_hub_error_says_how_it_is_answered() -> None:
    for cls in [HubError, *_subclasses(HubError)]:
        assert isinstance(cls.status, int) and 400 <= cls.status < 600, cls
        assert isinstance(cls.exit_code, int) and cls.exit_code > 0, cls
        assert cls.slug and cls.title, cls
        assert isinstance(cls.retryable, bool), cls
        assert cls.retryable == (cls.status == 503), cls


@pytest.mark.parametrize(
    ("exc", "status", "slug", "title", "detail", "headers"),
    [
        (AuthError("a bearer token is required"), 401, "unauthorised", "Authentication required",
         "a bearer token is required", {"www-authenticate": 'Bearer realm="familyhub"'}),
        (ForbiddenError("no"), 403, "forbidden", "Forbidden", "no", {}),
        (NotFoundError("gone"), 404, "not-found", "Not found", "gone", {}),
        (BrokerError("down"), 503, "unavailable", "Temporarily unavailable; retry with the same request", "down",
         {"retry-after": "2"}),
        (StoreError("down"), 503, "unavailable", "Temporarily unavailable; retry with the same request", "down",
         {"retry-after": "2"}),
        (ConfigError("secret detail"), 500, "internal", "Internal error", "ConfigError", {}),
    ],
)
def test_problem_documents(exc: HubError, status: int, slug: str, title: str, detail: str,
                           headers: dict[str, str]) -> None:
    response = problem_of(exc)
    body = json.loads(response.body)
    assert response.status_code == status and response.media_type == "application/problem+json"
    assert body == {"type": f"https://familyhub.invalid/problems/{slug}", "title": title, "status": status,
                    "detail": detail}
    assert {k: response.headers[k] for k in headers} == headers


def test_validation_problem_document_lists_every_problem() -> None:
    body = json.loads(problem_of(ValidationError([Problem("/a", "bad"), Problem("/b", "worse")])).body)
    assert body["status"] == 422 and body["title"] == "Invalid input"
    assert body["detail"] == "2 problem(s) in the request"
    assert body["errors"] == [{"pointer": "/a", "detail": "bad"}, {"pointer": "/b", "detail": "worse"}]


def test_problem_renders_for_people_rfc9457_and_fhir() -> None:
    plain = Problem("/x", "bad")
    assert str(plain) == "/x: bad" and str(Problem("", "bad")) == "bad"
    row = Problem("Bundle.entry[2].resource", "resource type 'Observation' is not mapped by mapping m@1", 2)
    assert str(row) == "row 2: Bundle.entry[2].resource: resource type 'Observation' is not mapped by mapping m@1"
    assert str(row.at(2, "a.ndjson")) == f"a.ndjson:2: {row.location}: {row.message}"
    assert row.in_payload() == Problem(f"[2]{row.location}", row.message)
    assert row.as_rfc9457(with_row=True) == {"row": 2, "pointer": row.location, "detail": row.message}
    assert row.as_issue(with_entry=True) == {
        "severity": "error",
        "code": "not-supported",
        "diagnostics": f"entry 2: {row.message}",
        "expression": [row.location],
    }
    assert Problem("", "broken").as_issue("structure") == {"severity": "error", "code": "structure",
                                                           "diagnostics": "broken"}
    assert row.at(2, "f.csv").as_json() == {"row": 2, "location": row.location, "detail": row.message,
                                            "file": "f.csv"}
