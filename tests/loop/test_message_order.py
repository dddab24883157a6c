"""A session's messages are answered in their stored order, whatever order their signals arrive in."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.identity import BUILTIN_ADMIN
from core.schemas.content import TextPart
from core.schemas.sessions import CreateMessage, MessageInput
from core.schemas.turns import SessionInput
from services import sessions
from tests import factories
from tests import processes as cli_processes
from tests.conftest import TEST_MASTER_KEY
from tests.loop.conftest import TURN_ENDS, Loop


async def _answered_in_order(loop: Loop, base: str, count: int) -> None:
    """Waits for `count` turns, then checks that they ran in the messages' order and that each
    reply answers its own message, having seen no later one."""
    async with asyncio.timeout(120):
        while sum(1 for e in await loop.stored(base) if e.type in TURN_ENDS) < count:
            await asyncio.sleep(0.1)
    stored = await loop.stored(base)
    messages = await loop.messages(base)
    users = [m for m in messages if m["role"] == "user"]
    assert len(users) == count
    started = [e.data["input_message_id"] for e in stored if e.type == "turn.started"]
    assert started == [m["id"] for m in users], "turns must run in the messages' stored order"
    assert [e.type for e in stored if e.type in TURN_ENDS] == ["turn.completed"] * count
    replies = {m["metadata"]["input_message_id"]: m for m in messages if m["role"] == "agent"}
    for user in users:
        text = user["content"][0]["text"]
        assert replies[user["id"]]["content"][0]["text"] == f"Echo: {text}"
    for generation in (e for e in stored if e.type == "llm.generation"):
        seen = [ref["message_id"] for ref in generation.data["messages"] if ref["role"] == "user"]
        assert seen == [m["id"] for m in users][: len(seen)], "a turn saw a message queued behind it"
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))


async def test_signals_out_of_order_are_answered_in_stored_order(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "echo"})
    agent_id, session_id = (uuid.UUID(part) for part in base.split("/")[3:6:2])
    stored = []
    for text in ("one", "two", "three"):  # stored as the API stores them, not signalled yet
        async with loop.db.session() as db:
            message, _ = await sessions.post_message(
                db,
                BUILTIN_ADMIN,
                agent_id,
                session_id,
                CreateMessage(message=MessageInput(content=[TextPart(text=text)])),
                None,
            )
        stored.append(str(message.id))
    for message_id in (stored[2], stored[0], stored[1]):  # the last one's signal arrives first
        await loop.temporal.start_workflow(
            "SessionWorkflow",
            SessionInput(session_id=str(session_id), agent_id=str(agent_id)),
            id=f"session-{session_id}",
            task_queue=loop.settings.temporal_task_queue,
            start_signal="new_message",
            start_signal_args=[message_id],
        )
    await _answered_in_order(loop, base, 3)


@pytest.fixture
def two_apis(loop: Loop, tmp_path: Path) -> Iterator[list[str]]:
    """Two `everloop api` processes on one database, task queue and Temporal."""
    env = {
        **os.environ,
        **loop.endpoints.as_env(),
        "AUTH_MODE": "none",
        "SECRETS_ENCRYPTION_KEY": TEST_MASTER_KEY,
        "TEMPORAL_TASK_QUEUE": loop.settings.temporal_task_queue,
        "LOG_LEVEL": "WARNING",
    }
    with cli_processes.api_processes(env, tmp_path) as bases:
        yield bases


async def test_concurrent_posts_to_two_api_processes_are_answered_in_order(
    loop: Loop, two_apis: list[str]
) -> None:
    base = await loop.chat(simulator={"mode": "echo"})
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in two_apis]
    try:
        posts = [
            clients[i % 2].post(f"{base}/messages", json=factories.text_message(f"message {i}"))
            for i in range(10)
        ]
        responses = await asyncio.gather(*posts)
    finally:
        for client in clients:
            await client.aclose()
    assert [r.status_code for r in responses] == [201] * 10
    await _answered_in_order(loop, base, 10)
