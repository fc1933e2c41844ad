"""IG queries over HTTP and the family's transparency view, against a real database."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from hub.db.schema import audit_log
from hub.ingest.services import Services
from tests.api.conftest import token_header


async def test_ig_queries_exports_and_family_transparency(client: httpx.AsyncClient, services: Services) -> None:
    cc = token_header(services, "coordinator", "cc-ig")
    hh = (await client.post("/v1/households", json={"coordinator_id": "cc-ig"}, headers=cc)).json()["household_id"]
    assert (await client.get(f"/v1/households/{hh}/timeline", headers=cc)).status_code == 200
    ig = token_header(services, "ig_officer", "ig-7")

    seen = (await client.get(f"/v1/audit/households/{hh}/who-has-seen", headers=ig)).json()
    assert [a["actor"] for a in seen] == ["cc-ig"]
    assert (await client.get("/v1/audit/verify", headers=ig)).json()["ok"] is True
    csv = await client.get("/v1/audit/export", params={"format": "csv", "household_id": hh}, headers=ig)
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("seq,") and "read_timeline" in csv.text
    fhir = (await client.get("/v1/audit/export", params={"household_id": hh}, headers=ig)).json()
    assert fhir["resourceType"] == "Bundle" and fhir["entry"][0]["resource"]["resourceType"] == "AuditEvent"

    parent = token_header(services, "parent", "parent-ig", household=hh)
    view = (await client.get(f"/v1/households/{hh}/transparency", headers=parent)).json()
    assert any(v["who"] == "cc-ig" and v["what"] == "viewed" for v in view["viewed"])
    assert all("hash" not in v and "source" not in v for v in view["viewed"])
    other = token_header(services, "parent", "parent-x", household="hh-x")
    assert (await client.get(f"/v1/households/{hh}/transparency", headers=other)).status_code == 404

    with services.store.engine.begin() as conn:  # someone edits the trail behind the hub's back
        first = conn.execute(sa.select(sa.func.min(audit_log.c.seq))).scalar_one()
        conn.execute(audit_log.update().where(audit_log.c.seq == first).values(actor="someone-else"))
    report = (await client.get("/v1/audit/verify", headers=ig)).json()
    assert report["ok"] is False and any(f"seq {first}: ALTERED" in p for p in report["problems"])
