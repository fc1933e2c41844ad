"""A small client for agency developers sending events to the hub.

    client = HubClient("https://hub.example", token="...")
    client.send_health(bundle_dict)                  # POST /v1/ingest/health (application/fhir+json)
    client.send_social_care(list_of_event_dicts)     # POST /v1/ingest/social-care (application/json)
    client.send_education(csv_text)                  # POST /v1/ingest/education (text/csv)

Batches are retried with exponential backoff and jitter on 5xx, 429 (``Retry-After`` honoured),
timeouts and connection errors; never on other 4xx. Retrying is safe: every event carries its
source system, source id and version (the hub deduplicates on those) and every batch carries an
``Idempotency-Key`` derived from its content.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from hub.core.errors import HubUnavailableError, ValidationError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, response: httpx.Response | None, cause: Exception | None = None):
        super().__init__(f"status {response.status_code}" if response is not None else repr(cause))
        self.response, self.cause = response, cause


def _retry_after(response: httpx.Response | None) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def idempotency_key(route: str, body: bytes) -> str:
    """The same batch to the same route always gets the same key."""
    return hashlib.sha256(route.encode() + b"\n" + body).hexdigest()


@dataclass
class BatchResult:
    status_code: int
    body: Any
    attempts: int


@dataclass
class HubClient:
    base_url: str
    token: str | None = None
    transport: httpx.BaseTransport | None = None
    batch_size: int = 500
    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, transport=self.transport, timeout=self.timeout
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # public API ---------------------------------------------------------------------------------

    def send_health(self, resource_or_bundle: dict[str, Any] | Sequence[dict[str, Any]]) -> list[BatchResult]:
        """Send a FHIR resource or Bundle as is, or a list of resources as ``batch`` Bundles."""
        if isinstance(resource_or_bundle, dict):
            return [self._post("/v1/ingest/health", _dumps(resource_or_bundle), "application/fhir+json")]
        results = []
        for chunk in _chunks(list(resource_or_bundle), self.batch_size):
            bundle = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "resource": r,
                        "request": {"method": "PUT", "url": f"{r.get('resourceType')}/{r.get('id')}"},
                    }
                    for r in chunk
                ],
            }
            results.append(self._post("/v1/ingest/health", _dumps(bundle), "application/fhir+json"))
        return results

    def send_social_care(self, events: Sequence[dict[str, Any]] | str | bytes) -> list[BatchResult]:
        """Send event dicts (JSON arrays of ``batch_size``) or CSV text (one batch)."""
        return self._send("/v1/ingest/social-care", events)

    def send_education(self, events: Sequence[dict[str, Any]] | str | bytes) -> list[BatchResult]:
        return self._send("/v1/ingest/education", events)

    # plumbing -----------------------------------------------------------------------------------

    def _send(self, route: str, events: Sequence[dict[str, Any]] | str | bytes) -> list[BatchResult]:
        if isinstance(events, str | bytes):
            body = events.encode() if isinstance(events, str) else events
            return [self._post(route, body, "text/csv")]
        return [
            self._post(route, _dumps(chunk), "application/json")
            for chunk in _chunks(list(events), self.batch_size)
        ]

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = _retry_after(exc.response) if isinstance(exc, _Retryable) else None
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return float(wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max)(state))

    def _post(self, route: str, body: bytes, content_type: str) -> BatchResult:
        headers = {"Content-Type": content_type, "Idempotency-Key": idempotency_key(route, body)}
        attempts = 0

        def once() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            try:
                response = self._client.post(route, content=body, headers=headers)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise _Retryable(None, exc) from exc
            if response.status_code in RETRY_STATUSES:
                raise _Retryable(response)
            return response

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            sleep=self.sleep,
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            reraise=True,
        )
        try:
            response = retrying(once)
        except _Retryable as exc:
            what = (
                f"HTTP {exc.response.status_code}" if exc.response is not None else type(exc.cause).__name__
            )
            raise HubUnavailableError(f"{route} failed after {attempts} attempts ({what})") from exc
        payload = _json_or_text(response)
        if response.status_code >= 400:
            raise ValidationError(
                f"{route} refused the batch: HTTP {response.status_code}", title="Hub refused the batch"
            )
        return BatchResult(response.status_code, payload, attempts)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str).encode()


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
