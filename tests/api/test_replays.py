"""`POST /v1/traces/{trace_id}/replay` and its GETs at the HTTP edge (docs/replay.md): a bad request
is a 400 naming the field and stores nothing, another account's trace or replay is a 404, a project
key reads its project's replays and may not start one. The runs themselves (re-execution, the
result trace, a killed worker): tests/loop/test_replay_mutations.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from temporalio.client import Client

from core.db import Database
from core.db.models import Agent, Message, Session, User
from core.db.replays import Replay
from core.schemas.replays import MAX_MUTATIONS, ReplayLoop
from everloop.stack import Endpoints
from services import replays
from services.replays import NO_MESSAGES
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for

SPANS: list[dict[str, Any]] = [
    {
        "span_id": "s1",
        "trace_id": "t1",
        "name": "llm-call",
        "kind": "llm",
        "model": "gpt-4o",
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "output": {"content": "Hello"},
    },
    {"span_id": "s2", "trace_id": "t1", "name": "search", "kind": "tool"},
]


async def _ingest(client: Any, headers: dict[str, str] | None = None) -> None:
    response = await client.post("/v1/traces", json={"spans": SPANS}, headers=headers or {})
    assert response.status_code == 201, response.text


async def _replays(db: Database) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(Replay)) or 0)


FILE = {"type": "file", "file": {"file_data": "http://169.254.169.254/latest/meta-data/"}}
BAD: list[tuple[Any, str]] = [
    ({"mutations": {}}, "mutations"),
    ({"mutations": {"nope": {"temperature": 0.5}}}, "mutations.nope"),
    ({"mutations": {"s1": {"colour": "red"}}}, "mutations.s1.colour"),
    ({"mutations": {"s1": {"temperature": "hot"}}}, "mutations.s1.temperature"),
    ({"mutations": {"s1": {"temperature": 3}}}, "mutations.s1.temperature"),
    ({"mutations": {"s1": {"top_p": True}}}, "mutations.s1.top_p"),
    ({"mutations": {"s1": {"max_tokens": 1.5}}}, "mutations.s1.max_tokens"),
    ({"mutations": {"s1": {"stop": [1]}}}, "mutations.s1.stop"),
    ({"mutations": {"s1": {"model": ""}}}, "mutations.s1.model"),
    ({"mutations": {"s1": {"system_prompt": 7}}}, "mutations.s1.system_prompt"),
    ({"mutations": {"s1": {"messages": []}}}, "mutations.s1.messages"),
    ({"mutations": {"s1": {"messages": [{"content": "x"}]}}}, "mutations.s1.messages[0].role"),
    ({"mutations": {"s1": {"messages": ["hi"]}}}, "mutations.s1.messages[0]"),
    # Parts that may carry a URL a provider fetches (only text and checked image URLs are sent).
    (
        {
            "mutations": {
                "s1": {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, FILE]}]}
            }
        },
        "mutations.s1.messages[0].content",
    ),
    (
        {"mutations": {"s1": {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}}},
        "mutations.s1.messages[0].content",
    ),
    (
        {"mutations": {"s1": {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}}},
        "mutations.s1.messages[0].content",
    ),
    (
        {"mutations": {"s1": {"messages": [{"role": "user", "content": {"a": 1}}]}}},
        "mutations.s1.messages[0].content",
    ),
    # One model call per mutated span at most: a request is bounded.
    ({"mutations": {f"s{i}": {"temperature": 0.5} for i in range(MAX_MUTATIONS + 1)}}, "mutations"),
    ({"mutations": {"s1": {}}}, "mutations.s1"),
    ({"mutations": {"s1": "faster"}}, "mutations.s1"),
    ({"mutations": ["s1"]}, "mutations"),
    ({}, "mutations"),
    ({"mutations": {"s1": {"temperature": 0.5}}, "fork_from_step": 2}, "fork_from_step"),
]


async def test_a_bad_request_is_a_400_naming_the_field(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    await _ingest(client)
    for body, field in BAD:
        response = await client.post("/v1/traces/t1/replay", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())
        assert field in response.json()["error"]
    assert await _replays(db) == 0  # nothing stored, nothing started


async def test_an_unknown_trace_or_replay_is_a_404(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/v1/traces/nope/replay", json={"mutations": {"s1": {"temperature": 0}}})
    assert response.status_code == 404 and response.json()["error"] == "trace not found"
    await _ingest(client)
    unknown = "01a22800-0000-7000-8000-000000000000"
    for path in (f"/v1/traces/t1/replay/{unknown}", f"/v1/traces/t1/replay/{unknown}/diff"):
        response = await client.get(path)
        assert response.status_code == 404 and response.json()["error"] == "replay not found"


@pytest.fixture
async def full(
    endpoints: Endpoints, db: Database, task_queue: str
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    # No worker here: the POST answers at once (REPLAY_WAIT_S=0) with the run `pending`.
    settings = full_settings(endpoints, REPLAY_WAIT_S="0", TEMPORAL_TASK_QUEUE=task_queue)
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as test_client:
        yield test_client


async def test_another_account_s_trace_and_replays_are_404_and_a_project_key_only_reads(
    full: AsyncTestClient[Litestar], temporal_client: Client
) -> None:
    alice = As(full, await register(full))
    await _ingest(full, alice.headers)
    mutations = {"s1": {"temperature": 0.2}, "s2": {"temperature": 0.2}}
    started = await alice.post("/v1/traces/t1/replay", {"mutations": mutations})
    assert started.status_code == 200, started.text
    body = started.json()
    replay_id = body["replay_run_id"]
    try:
        assert body["status"] == "pending" and body["result_trace_id"] is None
        # The diffs are planned at once: the span without a model Alice has says why.
        s1, s2 = body["diffs"]
        assert s1["original_output"] == {"content": "Hello"} and s1["mutated_output"] is None
        assert "'gpt-4o' is none of the models you may use" in s1["reason"]
        assert s1["mutated_input"] == {**SPANS[0]["input"], "temperature": 0.2}
        assert s2["reason"].startswith("a tool span is not re-executed")
        run = (await alice.get(f"/v1/traces/t1/replay/{replay_id}")).json()
        assert run["created_by"] and run["config"] == {"mutations": mutations} and run["status"] == "pending"

        bob = As(full, await register(full))
        await _ingest(full, bob.headers)  # a trace of the same id, his own
        assert (
            await bob.post("/v1/traces/t1/replay", {"mutations": {"nope": {"top_p": 1}}})
        ).status_code == 400
        for path in (f"/v1/traces/t1/replay/{replay_id}", f"/v1/traces/t1/replay/{replay_id}/diff"):
            response = await bob.get(path)
            assert response.status_code == 404 and "s1" not in response.text

        # A project key reaches only its project's replays, and starts none (a replay spends the
        # account's models).
        project = (await alice.post("/v1/projects", {"name": "keyed"})).json()
        key = {"Authorization": f"Bearer {project['api_key']}"}
        assert (await full.get(f"/v1/traces/t1/replay/{replay_id}", headers=key)).status_code == 404
        refused = await full.post("/v1/traces/t1/replay", json={"mutations": mutations}, headers=key)
        assert refused.status_code == 403
        diff = (await alice.get(f"/v1/traces/t1/replay/{replay_id}/diff")).json()
        assert diff["diffs"] == body["diffs"] and diff["original_trace_id"] == "t1"
    finally:
        await temporal_client.get_workflow_handle(ReplayLoop.workflow_id(replay_id)).terminate("test over")


async def _message_of_another_account(db: Database) -> uuid.UUID:
    """A message in a session of another account's agent (Alice's), stored as her turns store them."""
    async with db.session() as s:
        alice = User(email=f"{uuid.uuid4().hex[:10]}@example.com")
        s.add(alice)
        await s.flush()
        agent = Agent(owner_id=alice.id, name="Alice's")
        s.add(agent)
        await s.flush()
        session = Session(agent_id=agent.id)
        s.add(session)
        await s.flush()
        message = Message(
            session_id=session.id,
            sequence=1,
            role="user",
            content=[{"type": "text", "text": "Alice's secret"}],
        )
        s.add(message)
        await s.commit()
        return message.id


async def _replay_references(
    full: AsyncTestClient[Litestar], db: Database, temporal_client: Client, message_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bob ingests an LLM span whose input refers to a stored message by id (as an agent turn's
    `llm.generation` does), with a model of his own, and replays it: the diff and the run's plan."""
    bob = As(full, await register(full))
    provider = (await bob.post("/v1/llm-providers", {"name": "Sim", "provider_type": "simulator"})).json()
    assert (
        await bob.post(f"/v1/llm-providers/{provider['id']}/models", {"model_id": "sim-echo"})
    ).status_code == 201
    span = {
        "span_id": "s1",
        "trace_id": "t-refs",
        "name": "llm-call",
        "kind": "llm",
        "model": "sim-echo",
        "input": {"messages": [{"role": "user", "message_id": message_id}]},
    }
    response = await full.post("/v1/traces", json={"spans": [span]}, headers=bob.headers)
    assert response.status_code == 201, response.text
    started = await bob.post("/v1/traces/t-refs/replay", {"mutations": {"s1": {"temperature": 0.1}}})
    assert started.status_code == 200, started.text
    body = started.json()
    try:
        (diff,) = body["diffs"]
        async with db.session() as s:
            replay = await s.get(Replay, uuid.UUID(body["replay_run_id"]))
            assert replay is not None
            return diff, replay.result
    finally:
        await temporal_client.get_workflow_handle(ReplayLoop.workflow_id(body["replay_run_id"])).terminate(
            "test over"
        )


async def test_an_ingested_span_naming_another_account_s_message_never_reads_it(
    full: AsyncTestClient[Litestar], db: Database, temporal_client: Client
) -> None:
    # Only an agent turn's own spans are followed to stored messages, and only within the turn's
    # session: an ingested span's input is whatever the client sent.
    theirs = await _message_of_another_account(db)
    diff, result = await _replay_references(full, db, temporal_client, str(theirs))
    assert (diff["reexecuted"], diff["reason"], diff["mutated_output"]) == (False, NO_MESSAGES, None)
    assert result["plan"] == {}  # no call planned: the workflow never reads the message either
    assert "Alice's secret" not in str(diff) and "Alice's secret" not in str(result)


async def test_an_ingested_span_naming_a_malformed_message_id_is_an_input_only_diff(
    full: AsyncTestClient[Litestar], db: Database, temporal_client: Client
) -> None:
    diff, result = await _replay_references(full, db, temporal_client, "abc")
    assert (diff["reexecuted"], diff["reason"]) == (False, NO_MESSAGES)
    assert result["plan"] == {}


async def test_a_start_whose_answer_was_lost_leaves_the_run_to_its_workflow(
    full: AsyncTestClient[Litestar], db: Database, temporal_client: Client
) -> None:
    """start_workflow timed out after Temporal took the workflow: the run is not failed (the client
    would send again and pay twice); one whose workflow Temporal does not have is."""
    alice = As(full, await register(full))
    await _ingest(full, alice.headers)
    started = await alice.post("/v1/traces/t1/replay", {"mutations": {"s1": {"temperature": 0.2}}})
    assert started.status_code == 200, started.text
    replay_id = uuid.UUID(started.json()["replay_run_id"])
    handle = temporal_client.get_workflow_handle(ReplayLoop.workflow_id(replay_id))
    try:
        # No worker on this task queue: the workflow exists and the run is `pending`, as after a
        # start whose answer was lost.
        async with db.session() as s:
            assert not await replays.settle_unstarted(s, temporal_client, replay_id)
            row = await s.get(Replay, replay_id, populate_existing=True)
            assert row is not None and (row.status, row.error) == ("pending", None)
    finally:
        await handle.terminate("test over")
    # A run whose workflow Temporal never had: failed, saying so.
    async with db.session() as s:
        row = await s.get(Replay, replay_id)
        assert row is not None
        twin = Replay(
            owner_id=row.owner_id,
            project_id=row.project_id,
            trace_row_id=row.trace_row_id,
            original_trace_id=row.original_trace_id,
            kind=row.kind,
            config=row.config,
            result=row.result,
        )
        s.add(twin)
        await s.commit()
        assert await replays.settle_unstarted(s, temporal_client, twin.id)
        await s.refresh(twin)
        assert twin.status == "failed" and twin.error == replays.UNSTARTED
