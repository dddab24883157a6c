"""Provider type `llmsim`, Everruns' name for its simulator (issue 12): accepted on create and
update, kept and returned as given, and a turn through it runs exactly as through `simulator`."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from core.db import Database
from core.db.models import Event
from everloop.stack import Endpoints
from tests import factories
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for
from tests.conftest import make_settings
from tests.factories import Client
from tests.loop import conftest as loop_setup
from tests.loop.conftest import Loop
from tests.servers import running
from tests.sse import SSE
from tests.workers import Workers

TURN_ENDS = {"turn.completed", "turn.failed", "turn.cancelled"}
loop = loop_setup.loop  # the loop tier's fixture here too: an in-process worker, the simulator over HTTP


async def test_llmsim_is_kept_and_returned_as_given(client: Client) -> None:
    created = await factories.provider(client, name="LlmSim", provider_type="llmsim")
    path = f"/v1/llm-providers/{created['id']}"
    assert created["provider_type"] == "llmsim"
    assert (await client.get(path)).json()["provider_type"] == "llmsim"
    model = await factories.model(client, created["id"])
    listed = (await client.get("/v1/llm-models")).json()
    assert [(m["provider_type"], m["model_vendor"], m["healthy"]) for m in listed] == [
        ("llmsim", "llmsim", True)
    ]
    assert model["provider"]["provider_type"] == "llmsim"
    # Either name may replace the other (the UI sends the type with every edit).
    renamed = await client.patch(path, json={"provider_type": "simulator", "name": "Sim"})
    assert renamed.status_code == 200 and renamed.json()["provider_type"] == "simulator"
    back = await client.patch(path, json={"provider_type": "llmsim"})
    assert back.status_code == 200 and back.json()["provider_type"] == "llmsim"


async def test_a_type_change_that_moves_a_stored_key_needs_the_key_again(client: Client) -> None:
    created = await factories.provider(client, provider_type="llmsim", api_key="sk-sim-0123456789")
    path = f"/v1/llm-providers/{created['id']}"
    # simulator and llmsim are one endpoint: the key stays where it was.
    assert (await client.patch(path, json={"provider_type": "simulator"})).status_code == 200
    refused = await client.patch(path, json={"provider_type": "openai"})
    assert refused.status_code == 400 and refused.json()["field"] == "api_key"
    assert "provider_type" in refused.json()["error"]
    assert (await client.get(path)).json()["provider_type"] == "simulator"  # unchanged
    moved = await client.patch(path, json={"provider_type": "openai", "api_key": "sk-openai-0123456789"})
    assert moved.status_code == 200 and moved.json()["provider_type"] == "openai"
    assert moved.json()["api_key_set"] is True


@pytest.mark.parametrize("bad", ["LLMSIM", "llm-sim", "llmsim ", "", "sim", None, 7, ["llmsim"]])
async def test_a_malformed_provider_type_is_a_400_naming_it(client: Client, bad: Any) -> None:
    refused = await client.post("/v1/llm-providers", json={"name": "x", "provider_type": bad})
    assert refused.status_code == 400 and refused.json()["field"] == "provider_type", refused.text
    created = await factories.provider(client, provider_type="llmsim")
    patched = await client.patch(f"/v1/llm-providers/{created['id']}", json={"provider_type": bad})
    assert patched.status_code == 400 and patched.json()["field"] == "provider_type", patched.text
    assert len((await client.get("/v1/llm-providers")).json()) == 1


@pytest.fixture
async def full(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


async def test_a_user_s_base_url_stays_limited_to_types_that_may_have_one(
    full: AsyncTestClient[Litestar],
) -> None:
    user = As(full, await register(full))
    public = "https://8.8.8.8/v1"  # an address literal: no DNS needed
    created = await user.post(
        "/v1/llm-providers", {"name": "s", "provider_type": "llmsim", "base_url": public}
    )
    assert created.status_code == 201, created.text
    path = f"/v1/llm-providers/{created.json()['id']}"
    # Users may not point an Anthropic provider anywhere: nor by changing the type.
    refused = await user.patch(path, {"provider_type": "anthropic"})
    assert refused.status_code == 400 and refused.json()["field"] == "base_url"
    assert (await user.patch(path, {"provider_type": "openai"})).json()["provider_type"] == "openai"


# Turns through an llmsim provider.


async def _llmsim_chat(client: httpx.AsyncClient, simulator_url: str, simulator: dict[str, Any]) -> str:
    provider = await factories.provider(client, provider_type="llmsim", base_url=simulator_url)
    model = await factories.model(client, provider["id"], settings=simulator)
    agent = await factories.agent(client, default_model_id=model["id"])
    session = await factories.session(client, agent["id"])
    return f"/v1/agents/{agent['id']}/sessions/{session['id']}"


async def _turn_end(client: httpx.AsyncClient, base: str, message_id: str, timeout: float) -> str:
    """The type of the event that ends the message's turn (stored ones come first, then live)."""
    async with client.stream("GET", f"{base}/events", headers={"accept": "text/event-stream"}) as stream:
        sse = SSE(stream)

        async def end() -> str:
            while True:
                frame = await sse.event(timeout)
                if frame.event == "connected":
                    continue
                event = frame.json()
                if event["type"] in TURN_ENDS and event["context"].get("input_message_id") == message_id:
                    return str(event["type"])

        return await asyncio.wait_for(end(), timeout)


async def _types(db: Database, base: str) -> list[str]:
    session_id = uuid.UUID(base.rsplit("/", 1)[1])
    async with db.session() as s:
        query = select(Event.type).where(Event.session_id == session_id).order_by(Event.sequence)
        return list((await s.execute(query)).scalars())


async def test_a_turn_through_llmsim_runs_as_through_the_simulator_once_per_key(loop: Loop) -> None:
    base = await _llmsim_chat(loop.client, loop.simulator_url, {"mode": "fixed", "text": "Hello from llmsim"})
    body, key = factories.text_message("hi"), {"Idempotency-Key": "llmsim-1"}
    first = await loop.client.post(f"{base}/messages", json=body, headers=key)
    assert first.status_code == 201, first.text
    again = await loop.client.post(f"{base}/messages", json=body, headers=key)  # a client's retry
    assert again.headers.get("idempotent-replayed") == "true" and again.json()["id"] == first.json()["id"]
    assert await _turn_end(loop.client, base, first.json()["id"], 30) == "turn.completed"

    messages = (await loop.client.get(f"{base}/messages")).json()["data"]
    assert [m["role"] for m in messages] == ["user", "agent"]
    assert messages[1]["content"] == [{"type": "text", "text": "Hello from llmsim"}]
    types = await _types(loop.db, base)
    assert types.count("turn.started") == types.count("llm.generation") == types.count("turn.completed") == 1
    async with loop.db.session() as s:
        generation = (await s.execute(select(Event).where(Event.type == "llm.generation"))).scalar_one()
    assert generation.data["metadata"]["provider"] == "llmsim"


async def test_a_killed_worker_loses_no_llmsim_turn(
    endpoints: Endpoints, db: Database, simulator_url: str, task_queue: str, workers: Workers
) -> None:
    first = workers.start()
    words = " ".join(f"w{i}" for i in range(60))
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    with running(app_for(settings, configure_logs=False)) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            simulator = {"mode": "fixed", "text": words, "chunk_delay": 0.05}
            base = await _llmsim_chat(client, simulator_url, simulator)
            async with client.stream(
                "GET", f"{base}/events", headers={"accept": "text/event-stream"}
            ) as stream:
                sse = SSE(stream)
                posted = await client.post(f"{base}/messages", json=factories.text_message("speak"))
                assert posted.status_code == 201

                async def until(kind: str) -> None:
                    while (frame := await sse.event(60)).event == "connected" or frame.json()["type"] != kind:
                        pass

                await asyncio.wait_for(until("output.message.delta"), 60)
                first.send_signal(signal.SIGKILL)  # mid-stream, no chance to clean up
                first.wait(timeout=10)
                workers.start()
                # The heartbeat timeout tells Temporal the attempt is dead; another worker retries it.
                await asyncio.wait_for(until("turn.completed"), 90)
            messages = (await client.get(f"{base}/messages")).json()["data"]
    assert [m["role"] for m in messages] == ["user", "agent"]
    assert messages[1]["content"][0]["text"] == words
    types = await _types(db, base)
    assert types.count("message.agent") == types.count("turn.completed") == 1
