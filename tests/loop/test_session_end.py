"""Opswald's `POST /v1/sessions/{id}/end` on an agent session mid-turn: the turn stops as cancel
stops it, and the session takes no new message."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from temporalio.client import Client, WorkflowContinuedAsNewError

from core import bus
from core.db import Database
from everloop.stack import Endpoints
from everloop.worker import build_worker
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.servers import running


async def test_ending_a_session_stops_its_turn_and_closes_it(loop: Loop) -> None:
    text = " ".join(f"word{i}" for i in range(100))
    base = await loop.chat(simulator={"mode": "fixed", "text": text, "chunk_delay": 0.3})
    session_id = base.rsplit("/", 1)[1]
    sending = asyncio.create_task(loop.send(base, "talk slowly"))
    while not any(e.type == "reason.started" for e in await loop.stored(base)):
        await asyncio.sleep(0.05)
    ended = await loop.client.post(f"/v1/sessions/{session_id}/end")
    assert ended.status_code == 200, ended.text
    assert ended.json()["turn_cancelled"] is True and ended.json()["kind"] == "agent"
    frames = await asyncio.wait_for(sending, 10)
    assert frames[-1]["type"] == "turn.cancelled"
    refused = await loop.client.post(f"{base}/messages", json=factories.text_message("again"))
    assert refused.status_code == 409
    # The turn's trace ended with it, and Opswald's view says the session is over.
    listing = (await loop.client.get("/v1/sessions", params={"active": "false"})).json()
    mine = [s for s in listing["sessions"] if s["session_id"] == session_id]
    assert mine and mine[0]["status"] == "completed" and mine[0]["trace_count"] == 1
    detail = (await loop.client.get(f"/v1/sessions/{session_id}")).json()
    turn_id = next(f["data"]["turn_id"] for f in frames if f["type"] == "turn.cancelled")
    assert (detail["trace_count"], detail["trace_ids"], detail["active"]) == (1, [turn_id], False)


async def test_a_session_ended_before_its_turn_starts_runs_no_turn(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> None:
    """The message is stored and handed over, but no worker has taken it when the session ends: the
    end's cancel finds no turn, and the turn that starts later stops at its first step, before the
    model is called (the simulator would have answered)."""
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    with running(app_for(settings, configure_logs=False)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            provider = await factories.provider(client, base_url=simulator_url)
            model = await factories.model(client, provider["id"])
            agent = await factories.agent(client, default_model_id=model["id"])
            session = await factories.session(client, agent["id"])
            base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
            posted = await client.post(f"{base}/messages", json=factories.text_message("hello"))
            assert posted.status_code == 201, posted.text
            ended = await client.post(f"/v1/sessions/{session['id']}/end")
            assert ended.status_code == 200, ended.text
            assert ended.json()["turn_cancelled"] is False  # nothing was running yet
            redis = bus.connect(endpoints.redis_url)
            try:
                async with build_worker(temporal_client, settings, db, redis):
                    handle = temporal_client.get_workflow_handle(f"session-{session['id']}")
                    first = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
                    with pytest.raises(WorkflowContinuedAsNewError):
                        await asyncio.wait_for(
                            temporal_client.get_workflow_handle(handle.id, run_id=first).result(
                                follow_runs=False
                            ),
                            60,
                        )
            finally:
                await redis.aclose()
            stored = (await client.get(f"{base}/events", params={"limit": 100})).json()["data"]
    types = [e["type"] for e in stored]
    assert types[-2:] == ["turn.cancelled", "session.idled"], types
    assert "turn.started" in types  # the turn is on record, opened and cancelled
    assert not {"reason.started", "llm.generation", "message.agent"} & set(types), types
