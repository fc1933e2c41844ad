"""Pages for people: the coordinator, the family, agencies and information governance, in English and Welsh.

Server-rendered HTML (Jinja2 templates, GOV.UK Frontend vendored in ``static/vendor``) in the API's own
FastAPI app (:func:`hub.pages.site.create_site`). A page signs its reader in with a session cookie instead
of a bearer token and applies the same authorisation policy (``hub/governance/auth.py`` POLICY): its own
row, and the row of every API route whose data it shows, with the caller's view under the read policy
(``hub/sharing/visibility.py``), so a page never shows what the API would refuse.
"""
