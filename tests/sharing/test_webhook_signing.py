"""Webhook deliveries are signed to the Standard Webhooks specification, checked with its own library."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Receiver
from standardwebhooks.webhooks import WebhookVerificationError

from hub.sharing import webhooks
from tests.sharing.sharing_support import Webhook as Endpoint

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's own example secret


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


def deliver_one(endpoint: Endpoint, secret: str = SECRET) -> dict:
    """One real POST by the hub's sender, as an agency's endpoint receives it."""
    row = {"delivery_id": "d-7f3a", "kind": "share",
           "payload": json.dumps({"delivery_id": "d-7f3a", "kind": "share", "child": "hub-child-1"})}

    async def go() -> tuple[bool, str]:
        async with httpx.AsyncClient() as client:
            return await webhooks.send(client, webhooks.Webhook(endpoint.url, secret), row, datetime.now(UTC))

    ok, _ = asyncio.run(go())
    assert ok
    (req,) = endpoint.requests
    return req


def test_the_standard_webhooks_library_verifies_a_delivery(endpoint: Endpoint) -> None:
    req = deliver_one(endpoint)
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["webhook-id"] == "d-7f3a"  # the delivery id: the same on every attempt
    assert headers["webhook-signature"].startswith("v1,")
    assert not any(k.startswith("x-hub-signature") or k == "x-hub-timestamp" for k in headers)
    payload = Receiver(SECRET).verify(req["body"], headers)
    assert payload["child"] == "hub-child-1"
    assert webhooks.verify(SECRET, req["body"], headers)  # the hub's own check agrees


def test_a_replayed_delivery_with_an_old_timestamp_is_refused(endpoint: Endpoint) -> None:
    req = deliver_one(endpoint)
    body = req["body"]
    old = webhooks.signed_headers(SECRET, "d-7f3a", body, timestamp=int(time.time()) - 600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Receiver(SECRET).verify(body, old)
    assert not webhooks.verify(SECRET, body, old)
    # and the genuine delivery still verifies: refusing the replay lost nothing
    assert Receiver(SECRET).verify(body, {k.lower(): v for k, v in req["headers"].items()})


def test_another_agencys_secret_or_a_changed_body_does_not_verify(endpoint: Endpoint) -> None:
    req = deliver_one(endpoint)
    headers = {k.lower(): v for k, v in req["headers"].items()}
    with pytest.raises(WebhookVerificationError):
        Receiver(webhooks.new_secret()).verify(req["body"], headers)
    with pytest.raises(WebhookVerificationError):
        Receiver(SECRET).verify(req["body"].replace(b"hub-child-1", b"hub-child-2"), headers)


def test_a_secret_from_before_the_specification_is_its_raw_bytes(endpoint: Endpoint) -> None:
    req = deliver_one(endpoint, secret="a-long-random-shared-secret")
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert Receiver(b"a-long-random-shared-secret").verify(req["body"], headers)


def test_the_specifications_published_example_signs_the_same() -> None:
    body = b'{"test": 2432232314}'
    assert webhooks.sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_malformed_whsec_secret_is_refused_with_a_message_and_fails_only_its_delivery(
        endpoint: Endpoint) -> None:
    from hub.core.errors import ConfigError
    with pytest.raises(ConfigError, match="base64 after the prefix"):
        webhooks.sign("whsec_not*base64", "m", 1, b"{}")
    row = {"delivery_id": "d-1", "kind": "share", "payload": "{}"}

    async def go() -> tuple[bool, str]:
        async with httpx.AsyncClient() as client:
            return await webhooks.send(client, webhooks.Webhook(endpoint.url, "whsec_not*base64"), row,
                                       datetime.now(UTC))

    assert asyncio.run(go()) == (False, "a webhook secret starting whsec_ must be base64 after the prefix")
    assert endpoint.requests == []  # nothing unsigned went out


@pytest.mark.parametrize("stamp", ["²", "١٧٦٥٠٠٠٠٠٠", "9" * 40, "-1", ""])
def test_a_timestamp_that_is_not_plain_digits_is_refused_not_raised(endpoint: Endpoint, stamp: str) -> None:
    """Other scripts' digits pass ``str.isdigit`` but not ``int``: the check says no instead of failing."""
    req = deliver_one(endpoint)
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert webhooks.verify(SECRET, req["body"], headers)
    assert not webhooks.verify(SECRET, req["body"], {**headers, "webhook-timestamp": stamp})
