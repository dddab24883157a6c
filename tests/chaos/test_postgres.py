"""PostgreSQL away mid-turn: stopped for longer than every step's old budget, or frozen."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.chaos.conftest import Stack
from tests.mcp_server import SLOW_RUNS

pytestmark = pytest.mark.chaos

# Longer than each step's budget before issue 10: `reason` gave up after ~31 s, `finish_turn` after
# ~15 s, storing a tool's result after ~3 s. (It was 65 s; anything past the longest, 31 s, proves
# the same, and the suite is bounded in time.)
OUTAGE_S = 40.0
STREAM_S = 0.05  # the simulator's delay per chunk (a word)


def words(count: int) -> str:
    return " ".join(f"w{i}" for i in range(count))


def script(*steps: Any, chunk_delay: float = STREAM_S) -> dict[str, Any]:
    return {"mode": "script", "script": list(steps), "chunk_delay": chunk_delay}


async def test_postgres_stopped_during_a_stream_a_tool_and_a_final_step(stack: Stack) -> None:
    stack.workers.start()
    label = uuid.uuid4().hex
    # C: a quick tool call, then a final step that streams for ~20 s.
    final = await stack.chat(
        script({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, words(400)), tools=True
    )
    # B: a tool that runs for 20 s, then a short answer.
    tool = await stack.chat(
        script(
            {"tool_calls": [{"name": "slow", "arguments": {"label": label, "seconds": 20}}]},
            "Done.",
            chunk_delay=0,
        ),
        tools=True,
    )
    # A: one reply that streams for ~20 s.
    stream = await stack.chat({"mode": "fixed", "text": words(400), "chunk_delay": STREAM_S})

    await stack.post(final, "add two and three, then talk")
    await stack.until(final, "reason.started", count=2)  # the final step is streaming
    await stack.post(tool, "run the slow tool")
    await stack.until(tool, "tool.call_started")
    await stack.post(stream, "talk")
    await stack.until(stream, "reason.started")

    await asyncio.to_thread(stack.postgres.stop)
    await asyncio.sleep(OUTAGE_S)  # the outage itself is what is tested: it lasts this long
    await asyncio.to_thread(stack.postgres.start)

    watchers = dict(zip((final, tool, stream), stack.watchers, strict=True))
    for base, watcher in watchers.items():
        await stack.check_turns(base, watcher, turns=1)
        # No step was retried: the outage spent no attempt, each step called the LLM (or ran its
        # tool) once, and its reply (or result) was stored when the database came back.
        attempts = await stack.attempts(base)
        assert {kind for kind, _ in attempts} >= {"reason"}
        assert all(attempt == 1 for _, attempt in attempts), attempts
        # Refused reconnects during the outage were 503s, never 500s.
        assert set(watcher.refused) <= {503}, watcher.refused
    assert SLOW_RUNS[label] == ["started", "finished"], "the tool ran once; its result was kept"
    messages = (await stack.client.get(f"{stream}/messages")).json()["data"]
    assert messages[-1]["content"][0]["text"] == words(400)
    assert "Done." in (await stack.client.get(f"{tool}/messages")).json()["data"][-1]["content"][0]["text"]


async def test_postgres_frozen_during_a_stream_and_a_tool(stack: Stack) -> None:
    stack.workers.start()
    label = uuid.uuid4().hex
    tool = await stack.chat(
        script(
            {"tool_calls": [{"name": "slow", "arguments": {"label": label, "seconds": 8}}]},
            "Done.",
            chunk_delay=0,
        ),
        tools=True,
    )
    stream = await stack.chat({"mode": "fixed", "text": words(160), "chunk_delay": STREAM_S})
    await stack.post(tool, "run the slow tool")
    await stack.until(tool, "tool.call_started")
    await stack.post(stream, "talk")
    await stack.until(stream, "reason.started")

    await asyncio.to_thread(stack.postgres.freeze)
    # A hung server answers nothing: statements and connects time out (DB_* settings) and are
    # retried; the API answers 503 within its bound instead of hanging.
    started = asyncio.get_running_loop().time()
    refused = await stack.client.get(f"{stream}/messages")
    waited = asyncio.get_running_loop().time() - started
    await asyncio.sleep(20)  # the freeze itself is what is tested
    await asyncio.to_thread(stack.postgres.thaw)

    assert refused.status_code == 503, refused.text
    assert "retry-after" in refused.headers
    limits = stack.settings.database_timeouts
    assert waited < limits.pool_s + limits.connect_s + limits.statement_s + 5
    for base, watcher in zip((tool, stream), stack.watchers, strict=True):
        await stack.check_turns(base, watcher, turns=1)
        assert set(watcher.refused) <= {503}, watcher.refused
        attempts = await stack.attempts(base)
        assert all(attempt == 1 for _, attempt in attempts), attempts
    assert SLOW_RUNS[label] == ["started", "finished"]
