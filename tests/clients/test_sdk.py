"""Everruns' official Python SDK (`everruns-sdk`, pinned) drives Everloop unchanged: every SDK method
whose feature Everloop has, with an API key in AUTH_MODE=full. The SDK parses each answer into its
own pydantic models, so a missing or mistyped field fails here the way it fails for its users."""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from everruns_sdk import AgentClient, Everruns
from everruns_sdk.models import AgentCapabilityConfig, ContentPart, Event, ToolDefinition

from tests.clients.conftest import Everloop

TURN_ENDS = {"turn.completed", "turn.failed", "turn.cancelled"}
WAIT_S = 30.0

# The management client's session and message calls warn (once) that Everruns now prefers its
# AgentClient for calling an agent; they still work, and this suite uses both.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
async def sdk(everloop: Everloop) -> AsyncIterator[Everruns]:
    client = Everruns(api_key=everloop.api_key, base_url=everloop.url)
    yield client
    await client.close()


def _name() -> str:
    return f"agent-{uuid.uuid4().hex[:8]}"  # the SDK checks names against [a-z0-9]+(-[a-z0-9]+)*


async def _set_simulator(everloop: Everloop, settings: dict[str, Any]) -> None:
    response = await everloop.http.patch(f"/v1/llm-models/{everloop.model_id}", json={"settings": settings})
    assert response.status_code == 200, response.text


async def _until(stream: Any, types: set[str]) -> list[Event]:
    """Events from an SDK stream up to (and with) the first one of `types`."""
    seen: list[Event] = []

    async def read() -> None:
        async for event in stream:
            seen.append(event)
            if event.type in types:
                return

    try:
        await asyncio.wait_for(read(), WAIT_S)
    finally:
        stream.stop()
        await stream.aclose()
    return seen


async def test_agents_create_get_list_export_import_delete(sdk: Everruns, everloop: Everloop) -> None:
    name = _name()
    created = await sdk.agents.create(
        name,
        "You answer briefly.",
        description="a test agent",
        default_model_id=everloop.model_id,
        tags=["sdk"],
        capabilities=[AgentCapabilityConfig(ref="current_time")],
    )
    assert created.name == name and created.status == "active"
    assert [c.ref for c in created.capabilities or []] == ["current_time"]
    assert created.harness_id

    fetched = await sdk.agents.get(created.id)
    assert (fetched.id, fetched.system_prompt, fetched.default_model_id) == (
        created.id,
        "You answer briefly.",
        everloop.model_id,
    )
    assert created.id in [a.id for a in await sdk.agents.list(search=name)]
    assert created.id not in [a.id for a in await sdk.agents.list(search="no-such-agent-name")]

    exported = await sdk.agents.export(created.id)
    assert name in exported and "You answer briefly." in exported
    await sdk.agents.delete(created.id)  # archives, as Everruns does
    assert (await sdk.agents.get(created.id)).status == "archived"

    imported = await sdk.agents.import_agent(exported)
    assert imported.id != created.id and imported.system_prompt == "You answer briefly."
    assert [c.ref for c in imported.capabilities or []] == ["current_time"]


async def test_sessions_messages_and_events(sdk: Everruns, everloop: Everloop) -> None:
    await _set_simulator(everloop, {"mode": "fixed", "text": "Hello from Everloop"})
    agent = await sdk.agents.create(_name(), "Be brief.", default_model_id=everloop.model_id)
    session = await sdk.sessions.create(agent_id=agent.id, title="sdk chat")
    assert session.agent_id == agent.id and session.status == "started"
    assert session.model_id == everloop.model_id  # the agent's default model, taken at creation
    assert session.harness_id and session.organization_id
    assert session.id in [s.id for s in await sdk.sessions.list(agent_id=agent.id)]
    assert session.id in [s.id for s in await sdk.sessions.list(search="sdk chat")]

    stream = sdk.events.stream(session.id)
    sent = await sdk.messages.create(session.id, "hi")
    assert sent.role == "user" and sent.content[0].text == "hi"
    events = await _until(stream, TURN_ENDS)
    assert events[-1].type == "turn.completed"
    completed = [e for e in events if e.type == "output.message.completed"]
    assert len(completed) == 1
    assert completed[0].data["message"]["content"][0]["text"] == "Hello from Everloop"

    messages = await sdk.messages.list(session.id)
    assert [m.role for m in messages] == ["user", "agent"]
    assert messages[1].content[0].text == "Hello from Everloop"

    listed = await sdk.events.list(session.id)
    assert [e.sequence for e in listed] == sorted(e.sequence for e in listed if e.sequence is not None)
    assert {e.id for e in events if e.sequence is not None} <= {e.id for e in listed}
    # Paging as the SDK pages: forward from a sequence, backward before one.
    middle = listed[len(listed) // 2].sequence
    assert middle is not None
    after = await sdk.events.list(session.id, after_sequence=middle)
    assert [e.sequence for e in after] == [e.sequence for e in listed if (e.sequence or 0) > middle]
    before = await sdk.events.list(session.id, before_sequence=middle, limit=2)
    assert [e.sequence for e in before] == [middle - 2, middle - 1]

    finished = await sdk.sessions.get(session.id)
    assert finished.status == "idle" and finished.started_at and finished.finished_at
    await sdk.sessions.delete(session.id)
    assert session.id not in [s.id for s in await sdk.sessions.list(agent_id=agent.id)]


async def test_a_stream_resumes_from_the_last_event_id(sdk: Everruns, everloop: Everloop) -> None:
    await _set_simulator(everloop, {"mode": "fixed", "text": "one two three four five six"})
    agent = await sdk.agents.create(_name(), "Be brief.", default_model_id=everloop.model_id)
    session = await sdk.sessions.create(agent_id=agent.id)
    first = sdk.events.stream(session.id)
    await sdk.messages.create(session.id, "count")
    whole = await _until(first, TURN_ENDS)
    # Resume from every point of the turn, live delta frames included: what follows, once each.
    stored = [e for e in whole if e.sequence is not None]
    for index, event in enumerate(whole[:-1]):
        resumed = await _until(sdk.events.stream(session.id, since_id=event.id), TURN_ENDS)
        resumed_stored = [e.id for e in resumed if e.sequence is not None]
        before = max((e.sequence or 0) for e in whole[: index + 1] if e.sequence is not None)
        assert resumed_stored == [e.id for e in stored if (e.sequence or 0) > before], event.type


async def test_agent_client_run_returns_the_reply(everloop: Everloop, sdk: Everruns) -> None:
    await _set_simulator(everloop, {"mode": "echo"})
    agent = await sdk.agents.create(_name(), "Be brief.", default_model_id=everloop.model_id)
    async with AgentClient(agent_url=everloop.agent_url(agent.id), credential=everloop.api_key) as client:
        assert await client.run("hello there") == "Echo: hello there"
        session_id = (await client.list_sessions())["data"][0]["id"]
        # A second turn in the same session skips the first one's events.
        assert await client.run("and again", session_id=session_id) == "Echo: and again"
        events = await client.list_events(session_id)
        assert [e.type for e in events].count("turn.completed") == 2


async def test_cancel_ends_a_running_turn(sdk: Everruns, everloop: Everloop) -> None:
    await _set_simulator(everloop, {"mode": "fixed", "text": "slow", "first_token_delay": 20})
    agent = await sdk.agents.create(_name(), "Be brief.", default_model_id=everloop.model_id)
    session = await sdk.sessions.create(agent_id=agent.id)
    stream = sdk.events.stream(session.id)
    await sdk.messages.create(session.id, "take your time")
    started = await _until(stream, {"reason.started"})
    assert started[-1].type == "reason.started"
    await sdk.sessions.cancel(session.id)
    ended = await _until(sdk.events.stream(session.id, since_id=started[-1].id), TURN_ENDS)
    assert ended[-1].type == "turn.cancelled"


async def test_capabilities_list_search_and_get(sdk: Everruns) -> None:
    everything = await sdk.capabilities.list()
    assert {"current_time", "test_math", "session_file_system"} <= {c.id for c in everything}
    found = await sdk.capabilities.list(search="math")
    assert [c.id for c in found] == ["test_math"]
    page = await sdk.capabilities.list_page(limit=2)
    assert len(page.data) == 2 and page.total == len(everything)
    one = await sdk.capabilities.get("test_math")
    assert one.status == "available" and {t["name"] for t in one.tool_definitions or []} >= {"add"}


async def test_models_list_and_get(sdk: Everruns, everloop: Everloop) -> None:
    models = await sdk.models.list()
    mine = next(m for m in models if m.id == everloop.model_id)
    assert (mine.model_id, mine.provider_name) == ("sim-1", "Sim")
    fetched = await sdk.models.get(everloop.model_id)
    assert fetched.id == everloop.model_id and fetched.enabled


async def test_client_side_tool_results(sdk: Everruns, everloop: Everloop) -> None:
    script = [{"tool_calls": [{"name": "lookup_order", "arguments": {"order": 42}}]}, "Order 42 has shipped."]
    await _set_simulator(everloop, {"mode": "script", "script": script})
    tool = ToolDefinition(
        name="lookup_order",
        description="Find an order in the shop's database.",
        parameters={"type": "object", "properties": {"order": {"type": "integer"}}, "required": ["order"]},
    )
    agent = await sdk.agents.create(_name(), "Be brief.", default_model_id=everloop.model_id, tools=[tool])
    assert [t.name for t in agent.tools or []] == ["lookup_order"]
    session = await sdk.sessions.create(agent_id=agent.id)
    stream = sdk.events.stream(session.id)
    await sdk.messages.create(session.id, "where is my order?")
    requested = await _until(stream, {"tool.call_requested"})
    calls = requested[-1].tool_calls()
    assert [(c.name, c.arguments) for c in calls] == [("lookup_order", {"order": 42})]
    assert (await sdk.sessions.get(session.id)).status == "waitingfortoolresults"

    answer = ContentPart(type="tool_result", tool_call_id=calls[0].id, result={"status": "shipped"})
    accepted = await sdk.messages.create_tool_results(session.id, [answer])
    assert accepted.accepted == 1
    ended = await _until(sdk.events.stream(session.id, since_id=requested[-1].id), TURN_ENDS)
    assert ended[-1].type == "turn.completed"
    messages = await sdk.messages.list(session.id)
    assert messages[-1].content[0].text == "Order 42 has shipped."
    # The client's answer is the tool message, in Everruns' form: its JSON as a text part.
    answered = messages[-2]
    assert answered.role == "tool_result"
    assert answered.content[0].tool_call_id == calls[0].id
    [part] = answered.content[0].result
    assert part["type"] == "text" and json.loads(part["text"]) == {"status": "shipped"}


async def test_unknown_and_foreign_ids_answer_404(sdk: Everruns, everloop: Everloop) -> None:
    from everruns_sdk.errors import NotFoundError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NotFoundError):
            await sdk.sessions.get(str(uuid.uuid4()))
        with pytest.raises(NotFoundError):
            await sdk.agents.get(str(uuid.uuid4()))
