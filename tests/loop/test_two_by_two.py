"""Two API processes and two worker processes on one stack (issue 18, "Processes"): a batch of turns
runs on both workers; one worker killed (SIGKILL) mid-load loses no turn and stores no step twice;
an SSE client on each API sees the same stored events, in the same order, as the database holds.

The processes are real `everloop api` and `everloop worker` commands (forked ready-imported,
tests/processes.py); which worker ran what is read from Temporal (tests/loop/placement.py)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from sqlalchemy import select
from temporalio.client import Client

from core.db import Database
from core.db.models import Event, Message
from everloop.stack import Endpoints
from tests import factories
from tests import processes as cli_processes
from tests.conftest import TEST_MASTER_KEY
from tests.loop.placement import identity, placement, running, until_polling
from tests.processes import CliProcess
from tests.sse import SSE
from tests.workers import Workers

SESSIONS = 12
WORDS = " ".join(f"w{i}" for i in range(10))
# Each turn is one LLM step of about 5 s (the first token after 3 s, then a word every 0.2 s): every
# turn is still in flight when a worker is killed, so the kill hits work on it.
SIMULATOR = {"mode": "fixed", "text": WORDS, "first_token_delay": 3, "chunk_delay": 0.2}
# A killed worker's step is retried once its heartbeat timeout (10 s) has passed, and its sticky
# workflow tasks go back to the shared queue after as long: the batch ends well within this.
BATCH_TIMEOUT_S = 120
# Two workers boot at once, beside two API processes: a minute or more on a loaded machine.
BOOT_TIMEOUT_S = 180


class Seen(msgspec.Struct, frozen=True):
    """A stored event as an SSE client received it."""

    frame_id: str | None
    event_id: str
    sequence: int
    type: str


@pytest.fixture
def pair(workers: Workers) -> list[CliProcess]:
    """Two `everloop worker` processes on the test's task queue, started first: they boot while the
    API processes do."""
    return [workers.start(), workers.start()]


@pytest.fixture
def apis(
    pair: list[CliProcess], endpoints: Endpoints, task_queue: str, tmp_path: Path
) -> Iterator[list[str]]:
    """Two `everloop api` processes on the stack and the test's task queue."""
    env = {
        **os.environ,
        **endpoints.as_env(),
        "AUTH_MODE": "none",
        "SECRETS_ENCRYPTION_KEY": TEST_MASTER_KEY,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "LOG_LEVEL": "WARNING",
    }
    with cli_processes.api_processes(env, tmp_path) as bases:
        yield bases


async def follow(base_url: str, path: str, ready: asyncio.Event) -> list[Seen]:
    """The stored events a session's stream carries until the session idles after its one turn
    (live deltas, which carry no id and may be dropped by design, left out)."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        http.stream("GET", path, headers={"accept": "text/event-stream"}) as response,
    ):
        assert response.status_code == 200
        sse = SSE(response)
        assert (await sse.event()).event == "connected"
        ready.set()
        seen: list[Seen] = []
        while True:
            frame = await sse.event(BATCH_TIMEOUT_S)
            if frame.id is None:
                continue
            data = frame.json()
            seen.append(Seen(frame.id, data["id"], data["sequence"], data["type"]))
            if data["type"] == "session.idled":  # after the turn's end: the last event of the batch
                return seen


async def stored(db: Database, session_id: str) -> tuple[list[Event], list[Message]]:
    async with db.session() as s:
        sid = uuid.UUID(session_id)
        events = select(Event).where(Event.session_id == sid).order_by(Event.sequence)
        messages = select(Message).where(Message.session_id == sid).order_by(Message.sequence)
        return list((await s.execute(events)).scalars()), list((await s.execute(messages)).scalars())


async def test_two_apis_two_workers_one_killed_mid_load(
    pair: list[CliProcess],
    apis: list[str],
    workers: Workers,
    db: Database,
    temporal_client: Client,
    simulator_url: str,
    task_queue: str,
) -> None:
    by_identity = {identity(p.pid): p for p in pair}
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in apis]
    followers: list[asyncio.Task[list[Seen]]] = []
    try:
        provider = await factories.provider(clients[0], base_url=simulator_url)
        model = await factories.model(clients[0], provider["id"], settings=SIMULATOR)
        agent = await factories.agent(clients[0], default_model_id=model["id"])
        session_ids = [(await factories.session(clients[i % 2], agent["id"]))["id"] for i in range(SESSIONS)]
        paths = [f"/v1/agents/{agent['id']}/sessions/{sid}" for sid in session_ids]
        # Both workers poll before any turn starts, or the first would take the whole batch.
        await until_polling(temporal_client, task_queue, set(by_identity), timeout=BOOT_TIMEOUT_S)
        ready = [asyncio.Event() for _ in range(2 * SESSIONS)]
        followers = [
            asyncio.create_task(follow(apis[i % 2], f"{paths[i // 2]}/events", ready[i]))
            for i in range(2 * SESSIONS)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
        posted = await asyncio.gather(
            *(
                clients[i % 2].post(f"{path}/messages", json=factories.text_message(f"turn {i}"))
                for i, path in enumerate(paths)
            )
        )
        assert [r.status_code for r in posted] == [201] * SESSIONS, [r.text for r in posted]

        # The batch runs on both workers: each runs an LLM step (seen in flight) before one dies.
        # The one killed is the last seen starting one: its step has just begun, so the kill is
        # certain to land while it runs.
        seen: set[str] = set()
        async with asyncio.timeout(60):
            while True:
                now = await asyncio.gather(
                    *(running(temporal_client, f"session-{sid}", "reason") for sid in session_ids)
                )
                last = {worker for steps in now for worker in steps} - seen
                seen |= last
                if len(seen) >= 2:
                    break
                await asyncio.sleep(0.1)
        assert seen == set(by_identity), seen
        killed = sorted(last)[0]
        (survivor,) = seen - {killed}
        workers.kill(by_identity[killed])
        streams = await asyncio.wait_for(asyncio.gather(*followers), BATCH_TIMEOUT_S)
    finally:
        for task in followers:
            task.cancel()
        for client in clients:
            await client.aclose()

    retried = 0
    for n, sid in enumerate(session_ids):
        events, messages = await stored(db, sid)
        types = [e.type for e in events]
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)), "sequences have a gap"
        for kind in ("turn.started", "turn.completed", "message.agent", "llm.generation"):
            assert types.count(kind) == 1, (sid, kind, types)
        assert not {"turn.failed", "turn.cancelled"} & set(types), types
        assert [(m.role, m.content[0]["text"]) for m in messages] == [("user", f"turn {n}"), ("agent", WORDS)]
        # Both APIs' clients saw every stored event once, in the stored order.
        expected = [(str(e.id), e.sequence) for e in events]
        on_first, on_second = streams[2 * n], streams[2 * n + 1]
        assert [(s.event_id, s.sequence) for s in on_first] == expected
        assert on_first == on_second

        ran = await placement(temporal_client, f"session-{sid}")
        reasons = [step for step in ran.steps if step.activity == "reason"]
        assert len(reasons) == 1, ("the step was scheduled once; a retry is another attempt", reasons)
        assert set(ran.workflow_tasks) <= {killed, survivor}
        for step in ran.steps:
            assert step.attempt == 1 or step.worker == survivor, (
                "only the killed worker's work is retried",
                step,
            )
        retried += reasons[0].attempt > 1
    assert retried, "the kill hit steps in flight, and the other worker finished them"
