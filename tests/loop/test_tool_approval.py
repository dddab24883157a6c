"""Tool approval through whole turns: a call that needs a person waits (`tool.approval_requested`),
the other calls of its step run; approve runs it, deny answers it with the reason; a second
decision is 409, an unknown id 404; a worker killed while the call waits changes nothing."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from temporalio.testing import ActivityEnvironment

from activities.deps import LoopDeps
from activities.llm import ReasonActivities
from core import bus
from core.db import Database
from core.schemas.turns import ReasonInput
from everloop.stack import Endpoints
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.servers import running
from tests.sse import SSE
from tests.workers import Workers

SCRIPT = [
    {
        "tool_calls": [
            {"name": "add", "arguments": {"a": 2, "b": 3}},
            {"name": "multiply", "arguments": {"a": 2, "b": 3}},
        ]
    },
    "Done.",
]
GATED: list[Any] = [{"id": "test_math", "config": {"require_approval": ["add"]}}]


class Watch:
    """The session's SSE stream, read until a frame of a given type."""

    def __init__(self, sse: SSE) -> None:
        self.sse = sse
        self.seen: list[dict[str, Any]] = []

    async def until(self, kind: str, timeout: float = 30) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            while True:
                frame: dict[str, Any] = (await self.sse.event(timeout)).json()
                self.seen.append(frame)
                if frame["type"] == kind:
                    return frame

        return await asyncio.wait_for(read(), timeout)


@asynccontextmanager
async def watching(client: httpx.AsyncClient, base: str) -> AsyncIterator[Watch]:
    headers = {"accept": "text/event-stream"}
    async with client.stream("GET", f"{base}/events", headers=headers) as stream:
        sse = SSE(stream)
        assert (await sse.event()).event == "connected"
        yield Watch(sse)


def approval_path(base: str, tool_call_id: str) -> str:
    return f"{base}/tool-approvals/{tool_call_id}"


async def test_approve_runs_the_call_and_the_rest_of_the_step_does_not_wait(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=GATED)
    async with watching(loop.client, base) as watch:
        await loop.send(base, "sums", wait=False)
        asked = await watch.until("tool.approval_requested")
        assert asked["data"]["tool_name"] == "add" and asked["data"]["arguments"] == {"a": 2, "b": 3}
        # multiply needs nobody: it completes while add waits.
        done = await watch.until("tool.call_completed")
        assert done["data"]["tool_name"] == "multiply"
        call_id = asked["data"]["tool_call_id"]
        response = await loop.client.post(approval_path(base, call_id), json={"decision": "approve"})
        assert response.status_code == 200, response.text
        assert response.json() == {"tool_call_id": call_id, "decision": "approve", "reason": None}
        resolved = await watch.until("tool.approval_resolved")
        assert resolved["data"]["decision"] == "approve" and resolved["data"]["decided_by"] == "user"
        assert resolved["data"]["user_id"]
        await watch.until("turn.completed")
    stored = {
        m["tool_results"][0]["tool_call_id"]: m
        for m in await loop.messages(base)
        if m["role"] == "tool_result"
    }
    assert stored[call_id]["tool_results"][0]["result"] == {"result": 5}
    assert stored[call_id]["metadata"]["status"] == "success"

    again = await loop.client.post(approval_path(base, call_id), json={"decision": "deny"})
    assert again.status_code == 409
    unknown = await loop.client.post(approval_path(base, "call_nope"), json={"decision": "approve"})
    assert unknown.status_code == 404


async def test_deny_answers_the_call_with_the_reason(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=GATED)
    async with watching(loop.client, base) as watch:
        await loop.send(base, "sums", wait=False)
        call_id = (await watch.until("tool.approval_requested"))["data"]["tool_call_id"]
        bad = await loop.client.post(approval_path(base, call_id), json={"decision": "maybe"})
        assert bad.status_code == 400
        denied = await loop.client.post(
            approval_path(base, call_id), json={"decision": "deny", "reason": "not today"}
        )
        assert denied.status_code == 200
        completed = await watch.until("tool.call_completed")
        while completed["data"]["tool_call_id"] != call_id:
            completed = await watch.until("tool.call_completed")
        assert completed["data"]["status"] == "denied"
        assert completed["data"]["error"] == "not run: the user denied this tool call: not today"
        await watch.until("turn.completed")
    # The denied call never started.
    started = [e for e in await loop.stored(base) if e.type == "tool.call_started"]
    assert [e.data["tool_call"]["name"] for e in started] == ["multiply"]


async def test_a_definition_without_approval_and_an_agent_without_it_do_not_wait(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=["test_math"])
    frames = await loop.send(base, "sums")
    types = [f["type"] for f in frames]
    assert "tool.approval_requested" not in types and types[-1] == "turn.completed"


async def test_the_timeout_denies(loop: Loop) -> None:
    gated: list[Any] = [{"id": "test_math", "config": {"require_approval": True, "approval_timeout_s": 0.5}}]
    base = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=gated)
    frames = await loop.send(base, "sums")
    resolved = [f["data"] for f in frames if f["type"] == "tool.approval_resolved"]
    assert sorted(r["decided_by"] for r in resolved) == ["timeout", "timeout"]
    results = [f["data"] for f in frames if f["type"] == "tool.call_completed"]
    assert {r["status"] for r in results} == {"denied"}
    assert all("nobody approved it within 0.5 s" in r["error"] for r in results)


async def test_bad_approval_configuration_is_refused(loop: Loop) -> None:
    agent = await loop.client.post(
        "/v1/agents",
        json={"name": "a", "capabilities": [{"id": "test_math", "config": {"require_approval": ["fly"]}}]},
    )
    assert agent.status_code == 400 and "require_approval" in agent.json()["field"]
    negative = await loop.client.post(
        "/v1/agents",
        json={"name": "a", "capabilities": [{"id": "test_math", "config": {"approval_timeout_s": -1}}]},
    )
    assert negative.status_code == 400


async def test_a_worker_killed_while_a_call_waits_changes_nothing(
    endpoints: Endpoints,
    db: Database,
    simulator_url: str,
    task_queue: str,
    workers: Workers,
) -> None:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    first = workers.start()
    with running(app_for(settings, configure_logs=False)) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            provider = await factories.provider(client, base_url=simulator_url)
            model = await factories.model(
                client, provider["id"], settings={"mode": "script", "script": SCRIPT}
            )
            agent = await factories.agent(client, default_model_id=model["id"], capabilities=GATED)
            session = await factories.session(client, agent["id"])
            base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
            async with watching(client, base) as watch:
                posted = await client.post(f"{base}/messages", json=factories.text_message("sums"))
                assert posted.status_code == 201
                call_id = (await watch.until("tool.approval_requested", 60))["data"]["tool_call_id"]
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                workers.start()
                # The update waits until a worker runs the workflow again: the new process must start
                # and the dead one's sticky queue time out first (tens of seconds on a loaded machine).
                approved = await client.post(
                    approval_path(base, call_id), json={"decision": "approve"}, timeout=120
                )
                assert approved.status_code == 200, approved.text
                await watch.until("turn.completed", 90)
            messages = (await client.get(f"{base}/messages")).json()["data"]
    assert [m["role"] for m in messages] == ["user", "agent", "tool_result", "tool_result", "agent"]
    results = {
        m["tool_results"][0]["tool_call_id"]: m["tool_results"][0]
        for m in messages
        if m["role"] == "tool_result"
    }
    assert results[call_id]["result"] == {"result": 5}


async def test_a_retried_step_keeps_the_approval_decided_with_its_reply(loop: Loop) -> None:
    """The reply's calls that wait for a person are decided once, with the reply: a retry of the
    step that finds the reply stored returns the same, even if the agent's config changed since."""
    base = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=GATED)
    async with watching(loop.client, base) as watch:
        await loop.send(base, "sums", wait=False)
        asked = await watch.until("tool.approval_requested")
        call_id = asked["data"]["tool_call_id"]
        await loop.client.post(approval_path(base, call_id), json={"decision": "approve"})
        await watch.until("turn.completed")
    agent_path = base.rsplit("/sessions/", 1)[0]
    assert (
        await loop.client.put(f"{agent_path}/capabilities", json={"capabilities": ["test_math"]})
    ).is_success
    reply = next(e for e in await loop.stored(base) if e.type == "message.agent")
    deps = LoopDeps(
        db=loop.db, bus=bus.connect(loop.endpoints.redis_url), settings=loop.settings, secrets=None
    )
    try:
        again = await ActivityEnvironment().run(
            ReasonActivities(deps).reason,
            ReasonInput(
                session_id=base.rsplit("/", 1)[1],
                turn_id=asked["context"]["turn_id"],
                input_message_id=asked["context"]["input_message_id"],
                iteration=1,
                message_id=reply.data["message"]["id"],
            ),
        )
    finally:
        await deps.bus.aclose()
    by_id = {c.id: c for c in again.tool_calls}
    assert by_id[call_id].require_approval is True
    assert [c.require_approval for c in again.tool_calls if c.id != call_id] == [False]
