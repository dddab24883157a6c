"""Client-side tools through whole turns: a call to a tool the client declared (the agent's or the
session's `tools`) stores `tool.call_requested` with the reply, the session waits
(`waitingfortoolresults`) while the reply's server tools run, and the client's answer through
Everruns' own SDK (`messages.create_tool_results`) reaches the model. A repeated answer is accepted
once, another one refused; malformed bodies, unknown calls and an answer when nothing waits are
refused as documented; a cancel ends the wait; the timeout answers the call; a worker killed while
the call waits changes nothing. And batch approvals as Everruns' `AgentClient` sends them."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from everruns_sdk import AgentClient, Everruns
from everruns_sdk.models import ContentPart
from temporalio.client import Client

from core import bus
from core.db import Database
from core.db.models import Agent, Session
from core.identity import BUILTIN_ADMIN
from core.schemas.turns import ClientToolResult
from everloop.stack import Endpoints
from everloop.sweeper import hand_on_results
from everloop.worker import WORKFLOWS, build_worker
from services import client_tools
from services.approvals import LEFT_OUT
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.loop.test_replay import HISTORIES, _turn_history
from tests.loop.test_tool_approval import watching
from tests.replaying import replay
from tests.servers import running
from tests.workers import Workers

LOCATE = {
    "name": "get_location",
    "description": "Where the user is, from their device.",
    "parameters": {"type": "object", "properties": {"precision": {"type": "string"}}},
}
# One reply with a client-side call and a server-side one, then the answer.
SCRIPT = [
    {
        "tool_calls": [
            {"name": "get_location", "arguments": {"precision": "city"}},
            {"name": "add", "arguments": {"a": 2, "b": 3}},
        ]
    },
    "You are in Kyiv, and 2 + 3 = 5.",
]
# Long enough to show in the simulator's own count of the prompt's tokens (4 characters a token).
LONG = "Kyiv, Ukraine. " * 300


def ids(base: str) -> tuple[uuid.UUID, uuid.UUID]:
    """(agent id, session id) of a session's base path."""
    parts = base.split("/")
    return uuid.UUID(parts[3]), uuid.UUID(parts[5])


async def declare(
    db: Database, base: str, *, agent: list[Any] | None = None, session: list[Any] | None = None
) -> None:
    """Client-side tools straight into the rows (the agent and session APIs take `tools` too)."""
    agent_id, session_id = ids(base)
    async with db.session() as s:
        if agent is not None:
            row = await s.get(Agent, agent_id)
            assert row is not None
            row.tools = agent
        if session is not None:
            found = await s.get(Session, session_id)
            assert found is not None
            found.tools = session
        await s.commit()


async def client_chat(loop: Loop, **declared: list[Any]) -> str:
    base = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=["test_math"])
    await declare(loop.db, base, **(declared or {"agent": [LOCATE]}))
    return base


def results_path(base: str) -> str:
    return f"/v1/sessions/{ids(base)[1]}/tool-results"


async def status_of(loop: Loop, base: str) -> str:
    status: str = (await loop.client.get(base)).json()["status"]
    return status


async def test_a_client_tool_call_waits_and_the_sdks_answer_reaches_the_model(loop: Loop) -> None:
    base = await client_chat(loop)
    session_id = str(ids(base)[1])
    async with watching(loop.client, base) as watch:
        await loop.send(base, "where am I, and 2+3?", wait=False)
        requested = await watch.until("tool.call_requested")
        [call] = requested["data"]["tool_calls"]
        assert (call["name"], call["arguments"]) == ("get_location", {"precision": "city"})
        assert requested["data"]["timeout_s"] == loop.settings.client_tool_timeout_s
        # The reply's server tool runs meanwhile; the turn waits for the client.
        done = await watch.until("tool.call_completed")
        assert done["data"]["tool_name"] == "add"
        assert await status_of(loop, base) == "waitingfortoolresults"
        async with Everruns(api_key="evr_test", base_url=str(loop.client.base_url)) as sdk:
            part = ContentPart(type="tool_result", tool_call_id=call["id"], result={"city": LONG})
            answer = await sdk.messages.create_tool_results(session_id, [part])
        assert (answer.accepted, answer.status) == (1, "active")
        completed = await watch.until("tool.call_completed")
        assert completed["data"]["tool_call_id"] == call["id"]
        assert completed["data"]["status"] == "success" and completed["data"]["error"] is None
        await watch.until("turn.completed")
    assert await status_of(loop, base) == "idle"
    messages = await loop.messages(base)
    assert [m["role"] for m in messages] == ["user", "agent", "tool_result", "tool_result", "agent"]
    answered = next(
        m for m in messages if m["tool_results"] and m["tool_results"][0]["tool_call_id"] == call["id"]
    )
    assert answered["tool_results"][0]["result"] == {"city": LONG}
    assert answered["metadata"]["status"] == "success"
    # The model was offered the tool, and its next call read the answer: the simulator counted it.
    first, second = [e.data for e in await loop.stored(base) if e.type == "llm.generation"]
    assert "get_location" in [t["name"] for t in first["tools"]]
    assert answered["id"] in [m["message_id"] for m in second["messages"]]
    grown = second["metadata"]["usage"]["input_tokens"] - first["metadata"]["usage"]["input_tokens"]
    assert grown > len(LONG) // 4
    assert messages[-1]["content"][0]["text"] == "You are in Kyiv, and 2 + 3 = 5."
    history = await _turn_history(loop, base)
    replayed = await replay(history, WORKFLOWS)
    assert replayed.replay_failure is None
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "session_client_tool_turn.json").write_text(history.to_json())


async def test_a_sessions_own_tool_and_an_error_answer_on_the_nested_route(loop: Loop) -> None:
    base = await client_chat(loop, session=[LOCATE])
    async with watching(loop.client, base) as watch:
        await loop.send(base, "where?", wait=False)
        call = (await watch.until("tool.call_requested"))["data"]["tool_calls"][0]
        # A NUL, which PostgreSQL cannot hold in JSON text, becomes U+FFFD.
        body = {"tool_results": [{"tool_call_id": call["id"], "error": "permission\u0000 denied"}]}
        answer = await loop.client.post(f"{base}/tool-results", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 1, "status": "active"}
        completed = await watch.until("tool.call_completed")
        while completed["data"]["tool_call_id"] != call["id"]:
            completed = await watch.until("tool.call_completed")
        assert completed["data"]["status"] == "error"
        assert completed["data"]["error"] == "permission\ufffd denied"
        await watch.until("turn.completed")


async def test_a_repeated_answer_is_accepted_once_and_another_is_refused(loop: Loop) -> None:
    base = await client_chat(loop)
    async with watching(loop.client, base) as watch:
        await loop.send(base, "where?", wait=False)
        call = (await watch.until("tool.call_requested"))["data"]["tool_calls"][0]
        body = {"tool_results": [{"tool_call_id": call["id"], "result": {"b": 2, "a": 1}}]}
        first = await loop.client.post(results_path(base), json=body)
        assert first.status_code == 200, first.text
        await watch.until("turn.completed")
    # The same answer again (keys in another order): accepted, nothing stored twice.
    again = {"tool_results": [{"tool_call_id": call["id"], "result": {"a": 1, "b": 2}}]}
    repeated = await loop.client.post(results_path(base), json=again)
    assert repeated.status_code == 200, repeated.text
    assert repeated.json() == {"accepted": 1, "status": "idle"}
    other = {"tool_results": [{"tool_call_id": call["id"], "result": "somewhere else"}]}
    refused = await loop.client.post(results_path(base), json=other)
    assert refused.status_code == 409
    assert "already answered" in refused.json()["error"]
    assert "not waiting for tool results" not in refused.json()["error"], "the SDK would retry it"
    stored = await loop.stored(base)
    completions = [
        e for e in stored if e.type == "tool.call_completed" and e.data["tool_call_id"] == call["id"]
    ]
    assert len(completions) == 1
    results = [
        m
        for m in await loop.messages(base)
        if m["tool_results"] and m["tool_results"][0]["tool_call_id"] == call["id"]
    ]
    assert len(results) == 1


async def test_malformed_bodies_and_unknown_calls_are_refused(loop: Loop) -> None:
    base = await client_chat(loop)
    path = results_path(base)
    malformed: list[dict[str, Any]] = [
        {"tool_results": []},
        {"tool_results": [{"result": 1}]},
        {"tool_results": [{"tool_call_id": "call_1", "result": 1, "extra": True}]},
        {"results": [{"tool_call_id": "call_1", "result": 1}]},
        {"tool_results": [{"tool_call_id": "call_1"}, {"tool_call_id": "call_1"}]},
        {"tool_results": "call_1"},
    ]
    for body in malformed:
        response = await loop.client.post(path, json=body)
        assert response.status_code == 400, (body, response.text)
    empty = await loop.client.post(path, content=b"", headers={"content-type": "application/json"})
    assert empty.status_code == 400
    unknown = await loop.client.post(
        path, json={"tool_results": [{"tool_call_id": "call_nope", "result": 1}]}
    )
    assert unknown.status_code == 404
    elsewhere = await loop.client.post(
        f"/v1/sessions/{uuid.uuid4()}/tool-results",
        json={"tool_results": [{"tool_call_id": "c", "result": 1}]},
    )
    assert elsewhere.status_code == 404


async def test_a_result_stored_by_an_api_that_died_before_telling_the_workflow_is_handed_on(
    loop: Loop,
) -> None:
    base = await client_chat(loop)
    session_id = ids(base)[1]
    publisher = bus.connect(loop.endpoints.redis_url)

    async def died() -> Client:
        raise ConnectionResetError("the API process is killed here, after its commit")

    try:
        async with watching(loop.client, base) as watch:
            await loop.send(base, "where?", wait=False)
            call = (await watch.until("tool.call_requested"))["data"]["tool_calls"][0]
            answer = [ClientToolResult(tool_call_id=call["id"], result={"city": "Kyiv"})]
            async with loop.db.session() as db:
                with pytest.raises(ConnectionResetError):
                    await client_tools.submit(
                        db, BUILTIN_ADMIN, None, session_id, answer, bus=publisher, temporal=died
                    )
            # Stored (its event went out), and the workflow knows nothing of it.
            while (await watch.until("tool.call_completed"))["data"]["tool_call_id"] != call["id"]:
                continue
            assert await loop.temporal.get_workflow_handle(f"session-{session_id}").query(
                "pending_tool_results"
            ) == [call["id"]]
            assert await hand_on_results(loop.db, loop.temporal, grace=timedelta(0)) == 1
            await watch.until("turn.completed")
        # Handed on once: the turn it was stored in has ended.
        assert await hand_on_results(loop.db, loop.temporal, grace=timedelta(0)) == 0
    finally:
        await publisher.aclose()
    messages = await loop.messages(base)
    assert [m["role"] for m in messages] == ["user", "agent", "tool_result", "tool_result", "agent"]


async def test_cancel_ends_the_wait_and_a_late_answer_is_not_waited_for(loop: Loop) -> None:
    base = await client_chat(loop)
    async with watching(loop.client, base) as watch:
        await loop.send(base, "where?", wait=False)
        call = (await watch.until("tool.call_requested"))["data"]["tool_calls"][0]
        cancelled = await loop.client.post(f"{base}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        await watch.until("turn.cancelled")
    assert await status_of(loop, base) == "idle"
    late = await loop.client.post(
        results_path(base), json={"tool_results": [{"tool_call_id": call["id"], "result": "Kyiv"}]}
    )
    assert late.status_code == 409
    assert "not waiting for tool results" in late.json()["error"]
    # The next turn gives the open call its "interrupted" answer, and (the same script) asks anew.
    async with watching(loop.client, base) as watch:
        posted = await loop.client.post(f"{base}/messages", json=factories.text_message("never mind"))
        assert posted.status_code == 201, posted.text
        while (frame := await watch.until("tool.call_requested"))["context"][
            "input_message_id"
        ] != posted.json()["id"]:
            continue  # the stream starts with the stored events: the first turn's request
    assert frame["data"]["tool_calls"][0]["name"] == "get_location"
    closed = [
        m
        for m in await loop.messages(base)
        if m["tool_results"] and m["tool_results"][0]["tool_call_id"] == call["id"]
    ]
    assert [m["metadata"]["status"] for m in closed] == ["error"]
    assert "interrupted" in closed[0]["tool_results"][0]["error"]


async def test_the_timeout_answers_the_call_and_the_turn_goes_on(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> None:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue, CLIENT_TOOL_TIMEOUT="1")
    redis = bus.connect(endpoints.redis_url)
    worker = build_worker(temporal_client, settings, db, redis)
    try:
        with running(app_for(settings, configure_logs=False)) as server:
            async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                loop = Loop(http, db, endpoints, settings, temporal_client, simulator_url, worker)
                base = await client_chat(loop)
                frames = await loop.send(base, "where?")
                [requested] = [f["data"] for f in frames if f["type"] == "tool.call_requested"]
                assert requested["timeout_s"] == 1
                call_id = requested["tool_calls"][0]["id"]
                [timed_out] = [
                    f["data"]
                    for f in frames
                    if f["type"] == "tool.call_completed" and f["data"]["tool_call_id"] == call_id
                ]
                assert timed_out["status"] == "timeout"
                assert timed_out["error"] == "no result: the client did not answer this tool call within 1 s"
                assert frames[-1]["type"] == "turn.completed"
                assert await status_of(loop, base) == "idle"
                late = await http.post(
                    results_path(base), json={"tool_results": [{"tool_call_id": call_id, "result": "Kyiv"}]}
                )
                assert late.status_code == 409 and "by its timeout" in late.json()["error"]
    finally:
        await redis.aclose()


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
            agent = await factories.agent(client, default_model_id=model["id"], capabilities=["test_math"])
            session = await factories.session(client, agent["id"])
            base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
            await declare(db, base, agent=[LOCATE])
            async with watching(client, base) as watch:
                posted = await client.post(f"{base}/messages", json=factories.text_message("where?"))
                assert posted.status_code == 201
                call_id = (await watch.until("tool.call_requested", 60))["data"]["tool_calls"][0]["id"]
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                workers.start()
                # The update waits until a worker runs the workflow again (the dead one's sticky
                # queue times out first: tens of seconds on a loaded machine).
                body = {"tool_results": [{"tool_call_id": call_id, "result": {"city": "Kyiv"}}]}
                answered = await client.post(results_path(base), json=body, timeout=120)
                assert answered.status_code == 200, answered.text
                await watch.until("turn.completed", 90)
            messages = (await client.get(f"{base}/messages")).json()["data"]
    assert [m["role"] for m in messages] == ["user", "agent", "tool_result", "tool_result", "agent"]
    results = {
        m["tool_results"][0]["tool_call_id"]: m["tool_results"][0]
        for m in messages
        if m["role"] == "tool_result"
    }
    assert results[call_id]["result"] == {"city": "Kyiv"}


GATED: list[Any] = [{"id": "test_math", "config": {"require_approval": ["add", "multiply"]}}]
TWO_GATED = [
    {
        "tool_calls": [
            {"name": "add", "arguments": {"a": 2, "b": 3}},
            {"name": "multiply", "arguments": {"a": 2, "b": 3}},
        ]
    },
    "Done.",
]


async def test_batch_approvals_as_the_agent_client_sends_them(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "script", "script": TWO_GATED}, capabilities=GATED)
    session_id = str(ids(base)[1])
    async with watching(loop.client, base) as watch:
        await loop.send(base, "sums", wait=False)
        asked: dict[str, str] = {}
        while len(asked) < 2:
            frame = await watch.until("tool.approval_requested")
            asked[frame["data"]["tool_name"]] = frame["data"]["tool_call_id"]
        path = f"{base}/tool-approvals"
        twice = {"decisions": [{"tool_call_id": asked["add"], "decision": "allow"}] * 2}
        assert (await loop.client.post(path, json=twice)).status_code == 400
        always = {"decisions": [{"tool_call_id": asked["add"], "decision": "allow_always"}]}
        refused = await loop.client.post(path, json=always)
        assert refused.status_code == 400 and "allow_always" in refused.json()["error"]
        unknown = {"decisions": [{"tool_call_id": "call_nope", "decision": "allow"}]}
        assert (await loop.client.post(path, json=unknown)).status_code == 404
        assert (await loop.client.post(path, json={"approvals": []})).status_code == 400
        # Everruns' AgentClient posts the body as given, to the flat route.
        agent = AgentClient(agent_url=f"{loop.client.base_url}/v1", credential="evr_test")
        try:
            decided = await agent.submit_tool_approvals(
                session_id, {"decisions": [{"tool_call_id": asked["add"], "decision": "allow"}]}
            )
        finally:
            await agent.close()
        assert sorted(decided["resolved"], key=lambda r: r["tool"]) == [
            {"tool_call_id": asked["add"], "tool": "add", "outcome": "allow"},
            {"tool_call_id": asked["multiply"], "tool": "multiply", "outcome": "not_approved"},
        ]
        assert decided["status"] == "active"
        await watch.until("turn.completed")
    completed = {
        e.data["tool_name"]: e.data for e in await loop.stored(base) if e.type == "tool.call_completed"
    }
    assert completed["add"]["status"] == "success"
    assert completed["multiply"]["status"] == "denied"
    assert completed["multiply"]["error"] == f"not run: the user denied this tool call: {LEFT_OUT}"
    again = await loop.client.post(
        f"/v1/sessions/{session_id}/tool-approvals",
        json={"decisions": [{"tool_call_id": asked["add"], "decision": "reject"}]},
    )
    assert again.status_code == 409
