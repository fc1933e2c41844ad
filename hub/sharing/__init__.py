"""Consent-gated sharing: decide who may see each report, deliver it, and show who is still waiting.

* :mod:`hub.sharing.processor` — the sharing step the stream worker runs after each projected batch.
* :mod:`hub.sharing.delivery` — webhooks (HMAC-signed), the agency inbox, family copies, escalation.
* :mod:`hub.sharing.readiness` — before each appointment: which reports the clinician will have.
* :mod:`hub.sharing.consents` — consent management through the hub's acceptance path.
* :mod:`hub.sharing.journey` — the "they haven't sent me the report" journey, for the demo.
"""
