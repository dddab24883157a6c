"""Per-owner isolation: user B walks every route in the OpenAPI spec against user A's resources and
gets 404 (or 403) with none of A's data; B's lists never show A's rows; A's resources come out
unchanged. A route added later without an owner check fails here, and so does one whose request body
this walk cannot fill in (give it a valid body in BODIES)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_auth import OPEN
from tests.api.test_auth_full import (
    As,
    clear_rate_limits,
    full_settings,
    register,
)
from tests.api.test_drift import alert_of
from tests.api.test_golden import turn_trace_of
from tests.api.test_v2_knowledge import knowledge_of
from tests.apps import app_for

MARK = "ALICE-PRIVATE-7f3c"  # in every name A gives; it must never reach B
# Routes whose path parameter names no one's resource: the public capability catalogue.
PUBLIC = {"/v1/capabilities/{capability_id}"}
# Lists only an admin may read (B, a user, gets 403 and nothing else).
ADMIN_ONLY = {"/v1/users", "/v1/rate-limits"}
# A valid body per route (so the request reaches the owner check, not validation).
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/v2/knowledge/{knowledge_base_id}/add"): {"key": "taken", "content": "taken over"},
    ("post", "/v2/knowledge/{knowledge_base_id}/query"): {"query": "taken over"},
    ("post", "/v2/knowledge/{knowledge_base_id}/register_file"): {
        "filename": "taken.txt",
        "file_id": "01a2294e-0000-7000-8000-000000000000",
    },
    ("patch", "/v2/models/custom/{custom_model_id}"): {"name": "taken over"},
    ("patch", "/v2/functions/{function_id}"): {"instructions": "taken over"},
    **{
        ("post", f"/v2/functions/{{function_id}}/call{tail}"): {"input": "taken over"}
        for tail in ("", "/stream", "/{revision_id}", "/stream/{revision_id}")
    },
    ("post", "/v2/datasets/{dataset_id}"): {"input": "taken", "output": "over"},
    ("post", "/v2/datasets/{dataset_id}/entries"): {"input": "taken", "output": "over"},
    ("post", "/v2/datasets/{dataset_id}/query"): {"query": "taken over"},
    ("patch", "/v2/datasets/{dataset_id}/entries/{entry_id}"): {"output": "taken over"},
    ("patch", "/v1/agents/{agent_id}"): {"name": "taken over"},
    ("put", "/v1/agents/{agent_id}/capabilities"): {"capabilities": []},
    ("post", "/v1/agents/{agent_id}/sessions"): {},
    ("patch", "/v1/agents/{agent_id}/sessions/{session_id}"): {"title": "taken over"},
    ("patch", "/v1/sessions/{session_id}"): {"title": "taken over"},
    ("post", "/v1/sessions/{session_id}/messages"): {
        "message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    },
    ("post", "/v1/agents/{agent_id}/sessions/{session_id}/tool-approvals/{tool_call_id}"): {
        "decision": "approve"
    },
    ("post", "/v1/agents/{agent_id}/sessions/{session_id}/tool-approvals"): {
        "decisions": [{"tool_call_id": "call_of_alice", "decision": "allow"}]
    },
    ("post", "/v1/sessions/{session_id}/tool-approvals"): {
        "decisions": [{"tool_call_id": "call_of_alice", "decision": "allow"}]
    },
    ("post", "/v1/agents/{agent_id}/sessions/{session_id}/tool-results"): {
        "tool_results": [{"tool_call_id": "call_of_alice", "result": "taken over"}]
    },
    ("post", "/v1/sessions/{session_id}/tool-results"): {
        "tool_results": [{"tool_call_id": "call_of_alice", "result": "taken over"}]
    },
    ("post", "/v1/agents/{agent_id}/sessions/{session_id}/messages"): {
        "message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    },
    ("post", "/v1/agents/{agent_id}/sessions/{session_id}/fs/{path}"): {"content": "taken over"},
    ("post", "/v1/sessions/{session_id}/fs/{path}"): {"content": "taken over"},
    **{
        ("post", f"{fs}/_/{action}"): body
        for fs in ("/v1/agents/{agent_id}/sessions/{session_id}/fs", "/v1/sessions/{session_id}/fs")
        for action, body in (
            ("stat", {"path": "/notes.txt"}),
            ("move", {"src_path": "/notes.txt", "dst_path": "/taken-over.txt"}),
            ("copy", {"src_path": "/notes.txt", "dst_path": "/taken-over.txt"}),
            ("grep", {"pattern": "ALICE"}),
        )
    },
    ("patch", "/v1/llm-providers/{provider_id}"): {"name": "taken over"},
    ("post", "/v1/llm-providers/{provider_id}/models"): {"model_id": "taken-over"},
    ("patch", "/v1/llm-models/{model_id}"): {"display_name": "taken over"},
    ("patch", "/v1/mcp-servers/{server_id}"): {"name": "taken over"},
    ("patch", "/v1/traces/{trace_id}"): {"status": "error", "metadata": {"taken": "over"}},
    ("post", "/v1/traces/{trace_id}/events/{span_id}"): {"name": "taken over"},
    ("post", "/v1/traces/{trace_id}/replay"): {"mutations": {"span-of-alice": {"temperature": 0.5}}},
    ("post", "/v1/replays/{replay_id}/control"): {"action": "stop"},
    ("patch", "/v2/spans/{span_id}"): {"output": "taken over"},
    ("post", "/v2/spans/{span_id}/feedback"): {"score": 0.5},
    ("post", "/v2/spans/{span_id}/metrics"): {"name": "taken over", "value": 1},
    ("patch", "/v2/spans/{span_id}/metrics/{metric_id}"): {"value": 0},
    ("patch", "/v1/webhooks/{webhook_id}"): {"url": "http://127.0.0.1:9/taken-over"},
    ("put", "/v1/rate-limits/{subject_type}/{subject_id}"): {
        "plan": "enterprise",
        "per_minute": 1,
        "burst": 1,
    },
}


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    # REPLAY_WAIT_S=0: A's replay answers at once (no worker runs here).
    settings = full_settings(
        endpoints, MCP_LIST_TIMEOUT="5", OUTBOUND_ALLOW_LOOPBACK="true", REPLAY_WAIT_S="0"
    )
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as test_client:
        yield test_client


async def _alices_world(alice: As, db: Database) -> dict[str, str]:
    async def made(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await alice.post(path, body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    provider = await made("/v1/llm-providers", {"name": f"{MARK} provider", "provider_type": "simulator"})
    model = await made(f"/v1/llm-providers/{provider['id']}/models", {"model_id": f"{MARK}-model"})
    agent = await made(
        "/v1/agents",
        {"name": f"{MARK} agent", "system_prompt": f"{MARK} prompt", "default_model_id": model["id"]},
    )
    session = await made(f"/v1/agents/{agent['id']}/sessions", {"title": f"{MARK} session"})
    key = await made("/api/auth/api-keys", {"name": f"{MARK} key"})
    files = f"/v1/agents/{agent['id']}/sessions/{session['id']}/fs"
    written = await alice.client.put(f"{files}/notes.txt", content=MARK.encode(), headers=alice.headers)
    assert written.status_code == 201, written.text
    # Nothing needs to answer there (loopback is allowed for users only by the test-only setting).
    server = await made(
        "/v1/mcp-servers",
        {"name": f"{MARK} mcp", "transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"},
    )
    webhook = await made("/v1/webhooks", {"url": f"http://127.0.0.1:9/{MARK}"})
    delivery = await alice.post(f"/v1/webhooks/{webhook['id']}/test", {})
    assert delivery.status_code == 202, delivery.text
    project = await made("/v1/projects", {"name": f"{MARK} project"})
    ingested = await made(
        "/v1/traces",
        {
            "project_id": project["id"],
            "trace_name": f"{MARK} trace",
            "spans": [{"trace_id": "trace-of-alice", "span_id": "span-of-alice", "name": f"{MARK} span"}],
        },
    )
    metric = await made("/v2/spans/span-of-alice/metrics", {"name": f"{MARK} metric", "value": 1})
    event = await made(
        "/v1/events",
        {"event_type": "llm_call", "session_id": f"{MARK}-session", "data": {"input": MARK}},
    )
    replay = await alice.post(
        "/v1/traces/trace-of-alice/replay", {"mutations": {"span-of-alice": {"temperature": 0.5}}}
    )
    assert replay.status_code == 200, replay.text
    # A golden test of one of A's agent turns (stored: no worker runs here) and a run of it (its
    # workflow stays pending).
    turn = await turn_trace_of(db, agent["id"], "turn-of-alice")
    test = await made(
        "/v1/golden-tests",
        {"trace_id": turn, "name": f"{MARK} golden", "expected_outcome": {"final_message": MARK}},
    )
    run = await made("/v1/golden-tests/run", {"test_ids": [test["id"]]})
    # A function of A's (its name holds a `/`), its dataset and an entry.
    function = await made("/v2/functions", {"name": f"{MARK}/function", "instructions": MARK})
    entry = await made(f"/v2/datasets/{function['dataset_id']}/entries", {"input": MARK, "output": MARK})
    # A /v2 custom model of A's on her provider (registering answers 200: Opper's SDK takes no 201).
    custom_model = await alice.post(
        "/v2/models/custom",
        {"name": f"{MARK}/custom", "identifier": f"openai/{MARK}", "extra": {"provider_id": provider["id"]}},
    )
    assert custom_model.status_code == 200, custom_model.text
    # A knowledge base of A's with a document, its chunk and a file (stored directly: no embedding
    # model answers here).
    knowledge = await knowledge_of(db, agent["id"], MARK)
    return {
        "test_id": test["id"],
        "run_id": run["run_id"],
        "replay_id": replay.json()["replay_run_id"],
        "metric_id": metric["id"],
        "event_id": event["event_id"],
        "project_id": project["id"],
        "trace_id": ingested["trace_id"],
        "span_id": "span-of-alice",
        "agent_id": agent["id"],
        "session_id": session["id"],
        "provider_id": provider["id"],
        "model_id": model["id"],
        "key_id": key["id"],
        "tool_call_id": "call_of_alice",
        "server_id": server["id"],
        "webhook_id": webhook["id"],
        "delivery_id": delivery.json()["id"],
        "function_id": function["id"],
        "function_name": function["name"],
        "revision_id": function["revision_id"],
        "dataset_id": function["dataset_id"],
        "entry_id": entry["id"],
        "custom_model_id": custom_model.json()["id"],
        "custom_model_name": f"{MARK}/custom",
        **knowledge,
        "path": "notes.txt",
    }


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    found = [
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"} and not OPEN.match(path)
    ]
    # Deletes last, so every other call meets A's resources still there.
    return sorted(found, key=lambda op: op[0] == "delete")


async def test_user_b_cannot_reach_anything_of_user_a(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    alice = As(client, await register(client))
    ids = await _alices_world(alice, db)
    # A drift alert of A's (stored: a real one needs days of traffic; tests/api/test_drift.py makes those).
    ids["alert_id"] = await alert_of(db, ids["project_id"], f"{MARK} trace")
    # B setting (or reading) the limits of A's API key: admins only.
    ids.update(subject_type="api-keys", subject_id=ids["key_id"])
    bob = As(client, await register(client))
    spec = (await client.get("/api-doc/openapi.json")).json()

    walked = 0
    for method, template in _operations(spec):
        params = re.findall(r"\{([^}]+)\}", template)
        if not params or template in PUBLIC:
            continue
        missing = [p for p in params if p not in ids]
        assert not missing, f"{method.upper()} {template}: the walk has no resource of A for {missing}"
        path = template.format(**ids)
        response = await client.request(
            method.upper(), path, json=BODIES.get((method, template)), headers=bob.headers
        )
        assert response.status_code in (403, 404), (method, template, response.status_code, response.text)
        assert MARK not in response.text, (method, template, response.text)
        walked += 1
    assert walked >= 20  # the spec was walked, not skipped

    # Lists: B sees none of A's rows.
    for method, template in _operations(spec):
        if method == "get" and "{" not in template:
            response = await bob.get(template)
            assert response.status_code == (403 if template in ADMIN_ONLY else 200), (template, response.text)
            assert MARK not in response.text, (template, response.text)

    # Routes that name A's resources in the body, not the path: B's run of A's golden test, B's
    # golden test of A's turn.
    run_of_a = await bob.post("/v1/golden-tests/run", {"test_ids": [ids["test_id"]]})
    assert run_of_a.status_code == 404 and MARK not in run_of_a.text
    pin = await bob.post(
        "/v1/golden-tests",
        {"trace_id": "turn-of-alice", "name": "taken", "expected_outcome": {"status": "completed"}},
    )
    assert pin.status_code == 404 and MARK not in pin.text
    # B's replay (a fork) of A's turn and of A's trace: 404, and nothing stored.
    for trace_id in ("turn-of-alice", ids["trace_id"]):
        fork = await bob.post("/v1/replays", {"trace_id": trace_id, "fork_from_step": 1})
        assert fork.status_code == 404 and MARK not in fork.text
    assert (await bob.get("/v1/replays")).json()["total"] == 0

    # A's world is as A left it.
    agent = (await alice.get(f"/v1/agents/{ids['agent_id']}")).json()
    assert agent["name"] == f"{MARK} agent" and agent["status"] == "active"
    session = (await alice.get(f"/v1/agents/{ids['agent_id']}/sessions/{ids['session_id']}")).json()
    assert session["title"] == f"{MARK} session"
    provider = (await alice.get(f"/v1/llm-providers/{ids['provider_id']}")).json()
    assert provider["name"] == f"{MARK} provider"
    assert (await alice.get(f"/v1/mcp-servers/{ids['server_id']}")).json()["name"] == f"{MARK} mcp"
    webhook = (await alice.get(f"/v1/webhooks/{ids['webhook_id']}")).json()
    assert (webhook["url"], webhook["active"]) == (f"http://127.0.0.1:9/{MARK}", True)
    notes = await alice.get(f"/v1/agents/{ids['agent_id']}/sessions/{ids['session_id']}/fs/notes.txt")
    assert notes.json()["content"] == MARK  # a file is JSON now (issue 12: Everruns' SessionFile)
    keys = (await alice.get("/api/auth/api-keys")).json()
    assert [k["id"] for k in keys] == [ids["key_id"]]
    trace = (await alice.get(f"/v1/traces/{ids['trace_id']}")).json()
    assert (trace["name"], trace["status"], trace["metadata"]) == (f"{MARK} trace", "unset", {})
    assert trace["spans"][0]["events"] == []
    replay = (await alice.get(f"/v1/traces/{ids['trace_id']}/replay/{ids['replay_id']}")).json()
    assert replay["config"] == {"mutations": {"span-of-alice": {"temperature": 0.5}}}
    project = (await alice.get(f"/v1/projects/{ids['project_id']}")).json()
    assert [k["active"] for k in project["keys"]] == [True]
    assert [a["resolved_at"] for a in (await alice.get("/v1/drift/alerts")).json()] == [None]
    golden = (await alice.get(f"/v1/golden-tests/{ids['test_id']}")).json()
    assert golden["name"] == f"{MARK} golden"
    run = (await alice.get(f"/v1/golden-tests/runs/{ids['run_id']}")).json()
    assert [r["status"] for r in run["results"]] == ["pending"]


async def test_an_admin_does_not_see_users_agents(client: AsyncTestClient[Litestar], db: Database) -> None:
    alice = As(client, await register(client))
    ids = await _alices_world(alice, db)
    login = await client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": "root password"}
    )
    admin = As(client, login.json())
    assert (await admin.get(f"/v1/agents/{ids['agent_id']}")).status_code == 404
    assert MARK not in (await admin.get("/v1/agents")).text
