"""A tool's result as Everruns sends it (issue 12): text parts holding the result's JSON, in
`tool.call_completed` (SSE and the events list) and in the tool message's `tool_result` part, beside
the `tool_results` convenience array of v0.2 clients; the model reads the same JSON text as before.
The LLM requests go through a relay in front of the simulator, which keeps what the worker sent."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import httpx
import msgspec
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from litestar import Litestar, Request, Response, get, post
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

import activities.tools
from capabilities import registry
from capabilities.base import CapabilitySpec, Tool, ToolContext
from core.db.models import Event, Message
from tests import factories
from tests.loop.conftest import Loop
from tests.servers import running

MIGRATION = Path(__file__).parents[2] / "core/migrations/versions/20261129_0012_tool_results_as_text.py"
ODD = {"raw": b"\xff\x00ok", "ratio": float("nan"), "decoded": "caf\udce9", "nul": "a\x00b"}


class Relay:
    """An OpenAI-compatible address in front of the simulator that keeps each request's body: what
    the model was sent. `simulator`, when set, replaces the request's simulator behaviour."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bodies: list[dict[str, Any]] = []
        self.simulator: dict[str, Any] | None = None


@contextmanager
def relay(simulator_url: str) -> Iterator[Relay]:
    @post("/v1/chat/completions")
    async def completions(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await request.json()
        kept.bodies.append(body)
        if kept.simulator is not None:
            body = {**body, "simulator": kept.simulator}
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(f"{simulator_url}/chat/completions", json=body)
        kind = answer.headers.get("content-type", "application/json")
        return Response(answer.content, status_code=answer.status_code, media_type=kind)

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    with running(Litestar([completions, health])) as server:
        kept = Relay(f"{server.url}/v1")
        yield kept


@pytest.fixture
def giving_capability(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`give`: a tool that returns a plain string, values JSON has no form for, one too large (the
    limit lowered to 1000 characters for the test), or an object JSON cannot hold."""

    class Give(msgspec.Struct, kw_only=True):
        kind: Literal["text", "odd", "huge", "object"]

    async def give(args: Give, ctx: ToolContext) -> Any:
        return {"text": "plain words", "odd": ODD, "huge": "x" * 2000, "object": {"it": object()}}[args.kind]

    spec = CapabilitySpec(
        id="test_give",
        name="Give",
        description="Returns awkward values",
        tools=(Tool(name="give", description="Return a value", params=Give, handler=give),),
    )
    monkeypatch.setattr(activities.tools, "RESULT_MAX_CHARS", 1000)
    registry.CAPABILITIES[spec.id] = spec
    try:
        yield
    finally:
        del registry.CAPABILITIES[spec.id]


async def _session(loop: Loop, base_url: str, script: list[Any], capabilities: list[str]) -> str:
    provider = await factories.provider(loop.client, base_url=base_url)
    settings = {"mode": "script", "script": script}
    model = await factories.model(loop.client, provider["id"], settings=settings)
    agent = await factories.agent(loop.client, default_model_id=model["id"], capabilities=capabilities)
    session = await factories.session(loop.client, agent["id"])
    return f"/v1/agents/{agent['id']}/sessions/{session['id']}"


def _sent_to_model(body: dict[str, Any]) -> dict[str, str]:
    """The `role: tool` messages of an LLM request, by tool call id: their content."""
    return {m["tool_call_id"]: m["content"] for m in body["messages"] if m["role"] == "tool"}


async def test_a_result_reaches_clients_as_text_and_the_model_reads_it(
    loop: Loop, giving_capability: None
) -> None:
    calls = [
        {"name": "get_weather", "arguments": {"city": "Oslo"}},
        {"name": "give", "arguments": {"kind": "text"}},
        {"name": "give", "arguments": {"kind": "odd"}},
        {"name": "give", "arguments": {"kind": "huge"}},
        {"name": "give", "arguments": {"kind": "object"}},
        {"name": "divide", "arguments": {"a": 1, "b": 0}},
    ]
    with relay(loop.simulator_url) as llm:
        base = await _session(
            loop, llm.url, [{"tool_calls": calls}, "Done."], ["test_weather", "test_math", "test_give"]
        )
        frames = await loop.send(base, "go")
    assert frames[-1]["type"] == "turn.completed", frames[-1]
    messages = await loop.messages(base)
    order = [c["id"] for c in messages[1]["tool_calls"]]
    weather, text, odd, huge, not_json, divide = order

    # The tool messages: a `tool_result` part whose `result` is one text part with the JSON, and
    # the result itself in `tool_results`.
    tool_messages = {m["tool_results"][0]["tool_call_id"]: m for m in messages if m["role"] == "tool_result"}
    assert set(tool_messages) == set(order)
    texts: dict[str, str] = {}
    for call_id in (weather, text, odd):
        message = tool_messages[call_id]
        [part] = message["content"]
        assert set(part) == {"type", "tool_call_id", "result", "error"}
        assert (part["type"], part["tool_call_id"], part["error"]) == ("tool_result", call_id, None)
        [text_part] = part["result"]
        assert set(text_part) == {"type", "text"} and text_part["type"] == "text"
        texts[call_id] = text_part["text"]
        assert json.loads(texts[call_id]) == message["tool_results"][0]["result"]
    assert tool_messages[weather]["tool_results"][0]["result"]["city"] == "Oslo"
    assert texts[text] == '"plain words"'  # a string is JSON too: quoted
    assert tool_messages[text]["tool_results"][0]["result"] == "plain words"
    # Bytes as base64, NaN as null, invalid UTF-8 as U+FFFD; a NUL stays (escaped in the text).
    assert json.loads(texts[odd]) == {
        "raw": "/wBvaw==",
        "ratio": None,
        "decoded": "caf\ufffd",
        "nul": "a\x00b",
    }
    errors = {}
    for call_id in (huge, not_json, divide):
        message = tool_messages[call_id]
        assert message["content"] == [
            {
                "type": "tool_result",
                "tool_call_id": call_id,
                "result": None,
                "error": message["tool_results"][0]["error"],
            }
        ]
        assert message["tool_results"][0]["result"] is None
        errors[call_id] = message["tool_results"][0]["error"]
    assert errors[huge] == "the tool's result is too large to pass on: 2002 characters of JSON, at most 1000"
    assert errors[not_json].startswith("the tool returned a value that is not JSON data")
    assert "division by zero" in errors[divide]

    # `tool.call_completed`, live and listed: the same text parts; none for a failed call.
    live = {f["data"]["tool_call_id"]: f["data"] for f in frames if f["type"] == "tool.call_completed"}
    listed = {
        e["data"]["tool_call_id"]: e["data"]
        for e in (await loop.client.get(f"{base}/events", params={"limit": 200})).json()["data"]
        if e["type"] == "tool.call_completed"
    }
    assert live == listed and set(live) == set(order)
    for call_id, data in live.items():
        if call_id in texts:
            assert data["result"] == [{"type": "text", "text": texts[call_id]}]
            assert (data["status"], data["success"], data["error"]) == ("success", True, None)
        else:
            assert "result" not in data  # as Everruns leaves it out
            assert (data["status"], data["success"], data["error"]) == ("error", False, errors[call_id])

    # The model read the same text, each under its call's id; an error as `{"error": ...}`.
    assert len(llm.bodies) == 2
    assert _sent_to_model(llm.bodies[1]) == {
        **texts,
        **{call_id: json.dumps({"error": error}) for call_id, error in errors.items()},
    }


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0012", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _migrate(loop: Loop, step: Any) -> None:
    """Runs `step` (a function of the migration) as Alembic runs it, on the test database."""

    def run(connection: Connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            step()

    async with loop.db.engine.begin() as connection:
        await connection.run_sync(run)


async def _rows(
    loop: Loop, session_id: uuid.UUID, s: AsyncSession | None = None
) -> tuple[list[Message], list[Event]]:
    """The session's tool messages and `tool.call_completed` events, in order (in `s`, if given)."""
    if s is None:
        async with loop.db.session() as own:
            return await _rows(loop, session_id, own)
    messages = await s.execute(
        select(Message)
        .where(Message.session_id == session_id, Message.role == "tool_result")
        .order_by(Message.sequence)
    )
    events = await s.execute(
        select(Event)
        .where(Event.session_id == session_id, Event.type == "tool.call_completed")
        .order_by(Event.sequence)
    )
    return list(messages.scalars()), list(events.scalars())


async def _contents(loop: Loop, session_id: uuid.UUID) -> tuple[list[Any], list[Any]]:
    messages, events = await _rows(loop, session_id)
    return [m.content for m in messages], [e.data for e in events]


async def test_rows_stored_before_read_as_before_and_the_upgrade_rewrites_them(loop: Loop) -> None:
    todos = [{"content": "Plan", "activeForm": "Planning", "status": "in_progress"}]
    calls = [
        {"name": "write_todos", "arguments": {"todos": todos}},
        {"name": "get_weather", "arguments": {"city": "Lisbon"}},
        {"name": "divide", "arguments": {"a": 1, "b": 0}},
    ]
    with relay(loop.simulator_url) as llm:
        capabilities = ["stateless_todo_list", "test_weather", "test_math"]
        base = await _session(loop, llm.url, [{"tool_calls": calls}, "Noted."], capabilities)
        await loop.send(base, "plan")
        llm.simulator = {"mode": "fixed", "text": "Still noted."}  # later turns call no tool
        session_id = uuid.UUID(base.rsplit("/", 1)[1])
        written = (await loop.messages(base))[2:5]
        assert [m["role"] for m in written] == ["tool_result"] * 3

        # The rows as the previous release stored them, written through the models: the result
        # itself in the message's part, and that part as the event's `result`.
        async with loop.db.session() as s:
            messages, events = await _rows(loop, session_id, s)
            for row in messages:
                [part] = row.content
                value = json.loads(part["result"][0]["text"]) if part["result"] else None
                row.content = [{**part, "result": value}]
            parts = {m.content[0]["tool_call_id"]: m.content[0] for m in messages}
            for event in events:
                data = {k: v for k, v in event.data.items() if k != "result"}
                event.data = {**data, "result": [parts[data["tool_call_id"]]]}
            await s.commit()
        old_messages, old_events = await _rows(loop, session_id)
        # What the model read for each result then: json.dumps of the stored (jsonb) value.
        before = {
            part["tool_call_id"]: json.dumps({"error": part["error"]} if part["error"] else part["result"])
            for part in (m.content[0] for m in old_messages)
        }
        failed = {p["tool_call_id"] for p in (m.content[0] for m in old_messages) if p["error"]}
        assert len(failed) == 1 and len(before) == 3

        # Read as they were read: the convenience array, the todo list, the model's conversation.
        listed = (await loop.messages(base))[2:5]
        assert [m["tool_results"] for m in listed] == [m["tool_results"] for m in written]
        assert [m["content"][0]["result"] for m in listed] == [m["tool_results"][0]["result"] for m in listed]
        assert (await loop.client.get(f"{base}/todos")).json()["todos"] == todos
        await loop.send(base, "again")
        assert _sent_to_model(llm.bodies[-1]) == before

        # The upgrade rewrites them as this release writes them; they read the same.
        await _migrate(loop, _migration().upgrade)
        messages, events = await _rows(loop, session_id)
        for message in messages:
            [part] = message.content
            call_id = part["tool_call_id"]
            text = None if call_id in failed else [{"type": "text", "text": before[call_id]}]
            assert part == {
                "type": "tool_result",
                "tool_call_id": call_id,
                "result": text,
                "error": part["error"],
            }
        for event in events:
            call_id = event.data["tool_call_id"]
            if call_id in failed:
                assert "result" not in event.data
            else:
                assert event.data["result"] == [{"type": "text", "text": before[call_id]}]
        listed = (await loop.messages(base))[2:5]
        assert [m["tool_results"] for m in listed] == [m["tool_results"] for m in written]
        assert (await loop.client.get(f"{base}/todos")).json()["todos"] == todos
        await loop.send(base, "once more")
        assert _sent_to_model(llm.bodies[-1]) == before
    listed_events = (await loop.client.get(f"{base}/events", params={"limit": 200})).json()["data"]
    assert [e["data"] for e in listed_events if e["type"] == "tool.call_completed"] == [
        e.data for e in events
    ]

    # Run again, it changes nothing; down (this session's rows) and up again, the same rows.
    module = _migration()
    await _migrate(loop, module.upgrade)
    assert await _contents(loop, session_id) == ([m.content for m in messages], [e.data for e in events])
    where = f"session_id = '{session_id}' AND "
    await _migrate(
        loop,
        lambda: module._rewrite("events", "data", where + "type = 'tool.call_completed'", module._event_down),
    )
    await _migrate(
        loop,
        lambda: module._rewrite("messages", "content", where + "role = 'tool_result'", module._message_down),
    )
    old = ([m.content for m in old_messages], [e.data for e in old_events])
    assert await _contents(loop, session_id) == old
    await _migrate(loop, module.upgrade)
    assert await _contents(loop, session_id) == ([m.content for m in messages], [e.data for e in events])
