"""A project key (`vgl_`) exports OTLP into its own project, on the real stack with full auth: the
traces land there, a trace of another of the account's projects is not added to (its spans are
rejected in the partial success), and the key still opens nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for

OTLP = "/v1/otlp/v1/traces"


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


def export(trace_id: str, span_id: str, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": f"chat {model}",
                                "startTimeUnixNano": "1764417600000000000",
                                "endTimeUnixNano": "1764417601000000000",
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": model}},
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }


async def test_a_project_key_exports_into_its_project(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    project = (await alice.post("/v1/projects", {"name": "otel app"})).json()
    key = {"Authorization": f"Bearer {project['api_key']}"}
    client.cookies.clear()  # the key alone, not Alice's sign-in cookie
    trace_id = "5b8efff798038103d269b633813fc60c"
    sent = await client.post(OTLP, json=export(trace_id, "eee19b7ec3c1b174"), headers=key)
    assert sent.status_code == 200, sent.text
    assert "partialSuccess" not in sent.json() or not sent.json()["partialSuccess"].get("rejectedSpans")

    stored = (await alice.get(f"/v1/traces/{trace_id}")).json()
    assert stored["project_id"] == project["id"] and stored["models_used"] == ["gpt-4o"]
    # The key reads it back (its project's) and retrying the export adds nothing.
    assert (
        await client.post(OTLP, json=export(trace_id, "eee19b7ec3c1b174"), headers=key)
    ).status_code == 200
    read = (await client.get(f"/v1/traces/{trace_id}", headers=key)).json()
    assert read["span_count"] == 1

    # A trace of Alice's default project (her own API credential sent it) is not the key's to add to.
    other = "0af7651916cd43dd8448eb211c80319c"
    assert (
        await alice.client.post(OTLP, json=export(other, "b7ad6b7169203331"), headers=alice.headers)
    ).status_code == 200
    refused = await client.post(OTLP, json=export(other, "00f067aa0ba902b7", "claude-3"), headers=key)
    assert refused.status_code == 200
    partial = refused.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1 and "another project" in partial["errorMessage"]
    kept = (await alice.get(f"/v1/traces/{other}")).json()
    assert kept["span_count"] == 1 and kept["models_used"] == ["gpt-4o"]
    assert (await client.get(f"/v1/traces/{other}", headers=key)).status_code == 404

    # Still nothing else: a project key is refused elsewhere, and another account's key is 401.
    assert (await client.get("/v1/agents", headers=key)).status_code == 403
    assert (await client.get("/v1/analytics/usage", headers=key)).status_code == 403
    rotated = (await alice.post(f"/v1/projects/{project['id']}/rotate-key", {})).json()["key"]
    client.cookies.clear()
    assert (
        await client.post(OTLP, json=export(trace_id, "eee19b7ec3c1b175"), headers=key)
    ).status_code == 401
    fresh = {"Authorization": f"Bearer {rotated}"}
    assert (
        await client.post(OTLP, json=export(trace_id, "eee19b7ec3c1b175"), headers=fresh)
    ).status_code == 200
