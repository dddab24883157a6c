"""A short built-in tool's call runs as a local activity (`CapabilitySpec.local`): its worker killed
mid-call, and PostgreSQL stopped mid-call, lose nothing and store nothing twice.

Such a call takes milliseconds, so each test holds it at a known point: the call needs approval, and
before approving it the test locks the session's row, on which the call's one transaction waits
(after the tool ran, its events take their sequence numbers there). The worker is killed, or
PostgreSQL stopped, while that statement waits: within LOCAL_TOOL_LIMIT (3 s) of the call's start,
after which the call would move to a regular activity. The approval's answer comes only once that
workflow task ends, so it is awaited after the kill."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from sqlalchemy import select, text
from temporalio.client import WorkflowHistory

from core.db.models import Session
from tests.chaos.conftest import Stack
from tests.chaos.test_postgres import script

pytestmark = pytest.mark.chaos

GATED: list[Any] = [{"id": "test_math", "config": {"require_approval": True}}]


async def _asked(stack: Stack, base: str) -> str:
    """A turn whose one call (`add`, local) waits for approval; its call id."""
    await stack.post(base, "add 2 and 3")
    stored = await stack.until(base, "tool.approval_requested")
    return str(next(e.data["tool_call_id"] for e in stored if e.type == "tool.approval_requested"))


@asynccontextmanager
async def _row_locked(stack: Stack, base: str) -> AsyncIterator[None]:
    """The session's row locked by a transaction of the test's, until the block ends (or the
    server goes away: then the transaction is gone with its connection)."""
    session_id = uuid.UUID(base.rsplit("/", 1)[1])
    lock = stack.db.session()
    try:
        await lock.execute(select(Session.id).where(Session.id == session_id).with_for_update())
        yield
    finally:
        with suppress(Exception):
            await lock.close()


async def _approve(stack: Stack, base: str, call_id: str) -> int:
    approved = await stack.client.post(
        f"{base}/tool-approvals/{call_id}", json={"decision": "approve"}, timeout=120
    )
    return approved.status_code


async def _until_a_statement_waits_on_a_lock(stack: Stack) -> None:
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    async with asyncio.timeout(60):
        while True:
            async with stack.db.session() as s:
                if await s.scalar(waiting):
                    return
            await asyncio.sleep(0.05)


def _scheduled(history: WorkflowHistory) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_a_worker_killed_during_a_local_tool_call(stack: Stack) -> None:
    first = stack.workers.start()
    base = await stack.chat(
        script({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "5.", chunk_delay=0),
        capabilities=GATED,
    )
    call_id = await _asked(stack, base)
    # The replacement boots meanwhile; the call's workflow task goes to the first worker, which
    # holds the session's workflow in its cache (its sticky queue).
    stack.workers.start()
    async with _row_locked(stack, base):
        approving = asyncio.create_task(_approve(stack, base, call_id))
        await _until_a_statement_waits_on_a_lock(stack)
        stack.workers.kill(first)  # mid-call: its transaction never commits
    assert await approving == 200  # answered by the workflow task that runs the call again
    # The killed workflow task times out; the next one runs the local attempt again.
    stored = await stack.check_turns(base, stack.watchers[0], turns=1)
    assert [e.type for e in stored].count("tool.call_started") == 1
    history = await stack.turn_history(base)
    assert "run_tool" not in _scheduled(history), "the call stayed local"
    assert any(e.HasField("workflow_task_timed_out_event_attributes") for e in history.events), (
        "the kill landed inside the workflow task that ran the call"
    )


async def test_postgres_stopped_during_a_local_tool_call(stack: Stack) -> None:
    stack.workers.start()
    base = await stack.chat(
        script({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "5.", chunk_delay=0),
        capabilities=GATED,
    )
    call_id = await _asked(stack, base)
    async with _row_locked(stack, base):
        approving = asyncio.create_task(_approve(stack, base, call_id))
        await _until_a_statement_waits_on_a_lock(stack)
        await asyncio.to_thread(stack.postgres.stop)
    # The local attempt failed with its connection; the regular activity waits out the outage.
    await asyncio.to_thread(stack.postgres.start)
    # The decision reached the workflow; the request's own database session died with the server,
    # so its answer may be the outage's 503 (a retry would get 409: decided).
    assert await approving in (200, 503)
    stored = await stack.check_turns(base, stack.watchers[0], turns=1)
    assert [e.type for e in stored].count("tool.call_completed") == 1
    assert _scheduled(await stack.turn_history(base)).count("run_tool") == 1, (
        "the failed local attempt moved to one regular activity"
    )
