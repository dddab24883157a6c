"""kill -9 the worker while an interactive fork holds at a step: the hold is workflow state, so a new
worker holds at the same step, and the fork runs on from there, running no step twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from everloop.stack import Endpoints
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.test_forks import ANSWER, script
from tests.mcp_server import COUNTS, serve_http
from tests.servers import running
from tests.sse import SSE
from tests.workers import Workers


async def _until(
    client: httpx.AsyncClient, replay_id: str, holding_at: int, timeout: float = 90
) -> dict[str, Any]:
    """Polls the replay until it holds before `holding_at` (the hold is workflow state, answered by a
    query: there is no event to await; bounded)."""

    async def poll() -> dict[str, Any]:
        while True:
            replay: dict[str, Any] = (await client.get(f"/v1/replays/{replay_id}")).json()
            if replay["holding_at"] == holding_at:
                return replay
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(poll(), timeout)


async def test_a_worker_killed_while_a_fork_holds_changes_nothing(
    endpoints: Endpoints, simulator_url: str, task_queue: str, workers: Workers
) -> None:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    first = workers.start()
    label = f"killed-{uuid.uuid4()}"
    with serve_http() as (url, _), running(app_for(settings, configure_logs=False)) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            server = (
                await client.post(
                    "/v1/mcp-servers", json={"name": "counter", "transport": "streamable_http", "url": url}
                )
            ).json()
            provider = await factories.provider(client, base_url=simulator_url)
            model = await factories.model(client, provider["id"], settings=script(label, ANSWER))
            agent = await factories.agent(
                client, default_model_id=model["id"], capabilities=[server["capability_id"]]
            )
            session = await factories.session(client, agent["id"])
            base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
            async with client.stream(
                "GET", f"{base}/events", headers={"accept": "text/event-stream"}, timeout=120
            ) as stream:
                sse = SSE(stream)
                assert (await sse.event()).event == "connected"
                posted = await client.post(f"{base}/messages", json=factories.text_message("count twice"))
                assert posted.status_code == 201

                async def turn_end() -> str:
                    while True:
                        frame = (await sse.event(90)).json()
                        if frame["type"] == "turn.completed":
                            return str(frame["context"]["turn_id"])

                trace_id = await asyncio.wait_for(turn_end(), 90)
            assert COUNTS[label] == 2

            started = await client.post(
                "/v1/replays", json={"trace_id": trace_id, "mode": "interactive", "fork_from_step": 3}
            )
            assert started.status_code == 201, started.text
            replay_id = started.json()["replay_id"]
            fork_session = started.json()["session_id"]
            await _until(client, replay_id, 3)
            # Step 3 (a reasoning step) runs; the fork then holds before step 4 (the tool).
            stepped = await client.post(f"/v1/replays/{replay_id}/control", json={"action": "step"})
            assert stepped.status_code == 200, stepped.text
            await _until(client, replay_id, 4)

            workers.kill(first)
            workers.start()
            # The new worker rebuilds the workflow from its history: the same hold, nothing re-run.
            held = await _until(client, replay_id, 4)
            assert held["status"] == "paused" and held["current_step"] == 3 and COUNTS[label] == 2

            played = await client.post(f"/v1/replays/{replay_id}/control", json={"action": "play"})
            assert played.status_code == 200, played.text

            async def done() -> dict[str, Any]:
                while True:
                    replay: dict[str, Any] = (await client.get(f"/v1/replays/{replay_id}")).json()
                    if replay["status"] not in ("running", "paused", "pending"):
                        return replay
                    await asyncio.sleep(0.2)

            replay = await asyncio.wait_for(done(), 90)
            listed = await client.get(f"/v1/sessions/{fork_session}/events", params={"limit": 100})
            assert listed.status_code == 200, listed.text
            events = listed.json()
    assert replay["status"] == "completed" and replay["result"]["final_output"] == ANSWER
    assert COUNTS[label] == 3  # step 4's tool ran once; step 2's never again
    # Step 3's model call happened once, before the kill; step 5's once, after it.
    types = [e["type"] for e in events["data"]]
    assert types.count("llm.generation") == 2 and types.count("turn.completed") == 1
