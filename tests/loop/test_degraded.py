"""The loop when things go wrong around it: Redis gone, a tool that hangs, a call left open."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import select
from temporalio.client import Client

from capabilities import registry
from capabilities.base import CapabilitySpec, Tool, ToolContext
from core import bus
from core.db import Database
from core.db.models import Event, Message
from everloop.stack import Endpoints
from everloop.stack.process import free_port
from everloop.worker import build_worker
from services import events
from services.conversation import INTERRUPTED
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.servers import running


async def _until_turn_ends(db: Database, session_id: uuid.UUID, timeout: float = 30) -> list[str]:
    """Polls Postgres: with Redis gone there is nothing live to wait on."""
    async with asyncio.timeout(timeout):
        while True:
            async with db.session() as s:
                types = list(
                    (
                        await s.execute(
                            select(Event.type).where(Event.session_id == session_id).order_by(Event.sequence)
                        )
                    ).scalars()
                )
            if "session.idled" in types:
                return types
            await asyncio.sleep(0.1)


async def test_the_loop_keeps_running_without_redis(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> None:
    settings = make_settings(
        endpoints, TEMPORAL_TASK_QUEUE=task_queue, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    dead_redis = bus.connect(settings.redis_url or "")
    worker = build_worker(temporal_client, settings, db, dead_redis)
    with running(app_for(settings, configure_logs=False)) as server:
        async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            provider = await factories.provider(client, base_url=simulator_url)
            model = await factories.model(
                client, provider["id"], settings={"mode": "fixed", "text": "still here"}
            )
            agent = await factories.agent(client, default_model_id=model["id"])
            session = await factories.session(client, agent["id"])
            base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
            assert (
                await client.post(f"{base}/messages", json=factories.text_message("hi"))
            ).status_code == 201
            types = await _until_turn_ends(db, uuid.UUID(session["id"]))
            assert "turn.completed" in types
            messages = (await client.get(f"{base}/messages")).json()["data"]
            assert messages[-1]["content"][0]["text"] == "still here"
    await dead_redis.aclose()


@pytest.fixture
def slow_capability() -> Iterator[None]:
    class Nap(msgspec.Struct, kw_only=True):
        seconds: float

    async def nap(args: Nap, ctx: ToolContext) -> dict[str, Any]:
        await asyncio.sleep(args.seconds)
        return {"slept": args.seconds}

    spec = CapabilitySpec(
        id="test_slow",
        name="Slow",
        description="A tool that takes its time",
        timeout_s=0.5,
        tools=(Tool(name="nap", description="Sleep", params=Nap, handler=nap),),
    )
    registry.CAPABILITIES[spec.id] = spec
    try:
        yield
    finally:
        del registry.CAPABILITIES[spec.id]


async def test_a_tool_over_its_timeout_is_a_timeout_result(loop: Loop, slow_capability: None) -> None:
    script = [
        {
            "tool_calls": [
                {"name": "nap", "arguments": {"seconds": 30}},
                {"name": "nap", "arguments": {"seconds": 0}},
            ]
        },
        "one nap was too long",
    ]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=["test_slow"])
    await loop.send(base, "sleep")
    results = {
        m["tool_results"][0]["error"] is None: m
        for m in await loop.messages(base)
        if m["role"] == "tool_result"
    }
    assert results[True]["tool_results"][0]["result"] == {"slept": 0}
    assert "did not finish within 0.5 s" in results[False]["tool_results"][0]["error"]
    statuses = sorted(e.data["status"] for e in await loop.stored(base) if e.type == "tool.call_completed")
    assert statuses == ["success", "timeout"]


async def test_a_call_left_open_gets_a_synthetic_result_before_the_next_reason(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "recovered"}, capabilities=["test_math"])
    session_id = uuid.UUID(base.rsplit("/", 1)[1])
    # A reply whose tool call never got a result (its worker died, the turn was cancelled...).
    async with loop.db.session() as db:
        db.add(
            Message(
                session_id=session_id,
                sequence=await events.next_sequence(db, session_id, "last_message_sequence"),
                role="agent",
                content=[
                    {"type": "tool_call", "id": "call_lost", "name": "add", "arguments": {"a": 1, "b": 1}}
                ],
                tags=[],
            )
        )
        await db.commit()
    await loop.send(base, "are you there?")
    messages = await loop.messages(base)
    assert [m["role"] for m in messages] == ["agent", "tool_result", "user", "agent"] or [
        m["role"] for m in messages
    ] == [
        "agent",
        "user",
        "tool_result",
        "agent",
    ]
    [synthetic] = [m for m in messages if m["role"] == "tool_result"]
    assert synthetic["tool_results"] == [{"tool_call_id": "call_lost", "result": None, "error": INTERRUPTED}]
    # A failed call's part as Everruns sends it: no result, the error (issue 12).
    assert synthetic["content"] == [
        {"type": "tool_result", "tool_call_id": "call_lost", "result": None, "error": INTERRUPTED}
    ]
    assert messages[-1]["content"][0]["text"] == "recovered"
    generation = next(e for e in await loop.stored(base) if e.type == "llm.generation")
    roles = [m["role"] for m in generation.data["messages"]]
    assert roles.index("tool_result") == roles.index("agent") + 1  # the result follows its call
