"""Kafka TLS and SASL for the faust worker, from the same settings as every aiokafka client.

aiokafka clients (publisher, topic admin, lag reader) take :meth:`Settings.kafka_client_options`
as keyword arguments; faust wants a credentials object instead. :func:`faust_credentials` builds it
from those same options, so the worker and the other clients cannot disagree on protocol, CA,
client certificate or SASL user.
"""

from __future__ import annotations

import ssl

import faust
from faust.types.auth import CredentialsT

from hub.core.settings import Settings


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """``broker_credentials`` for ``faust.App``: None for PLAINTEXT."""
    opts = settings.kafka_client_options()
    protocol = opts["security_protocol"]
    context = opts.get("ssl_context")
    assert context is None or isinstance(context, ssl.SSLContext)
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        assert context is not None
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=str(opts["sasl_plain_username"]),
                                 password=str(opts["sasl_plain_password"]),
                                 mechanism=str(opts["sasl_mechanism"]),
                                 ssl_context=context if protocol == "SASL_SSL" else None)
