"""A session's own capabilities are added to its agent's for that session's turns: the model is
offered their tools and the tools run, with the session's configuration (approval) where it gives
one; another session of the same agent has none of it."""

from __future__ import annotations

from typing import Any

from tests import factories
from tests.loop.conftest import Loop
from tests.loop.test_tool_approval import approval_path, watching

SCRIPT: list[Any] = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "5"]


async def _session(loop: Loop, agent_base: str, **fields: Any) -> str:
    agent_id = agent_base.split("/")[3]
    made = await factories.session(loop.client, agent_id, **fields)
    return f"/v1/agents/{agent_id}/sessions/{made['id']}"


async def test_a_session_capability_adds_its_tools_to_that_session_only(loop: Loop) -> None:
    plain = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=["current_time"])
    with_math = await _session(loop, plain, capabilities=["test_math"])

    await loop.send(with_math, "2+3?")
    messages = await loop.messages(with_math)
    assert messages[2]["tool_results"][0]["result"] == {"result": 5}
    offered = next(e for e in await loop.stored(with_math) if e.type == "llm.generation")
    assert {"add", "get_current_time"} <= {t["name"] for t in offered.data["tools"]}

    await loop.send(plain, "2+3?")  # the agent alone has no `add`: the call is answered with an error
    messages = await loop.messages(plain)
    assert messages[2]["tool_results"][0]["error"] and messages[2]["tool_results"][0]["result"] is None
    offered = next(e for e in await loop.stored(plain) if e.type == "llm.generation")
    assert "add" not in {t["name"] for t in offered.data["tools"]}


async def test_a_session_configuration_is_used_for_its_turns(loop: Loop) -> None:
    agent = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=["test_math"])
    config = {"ref": "test_math", "config": {"require_approval": True}}
    gated = await _session(loop, agent, capabilities=[config])
    async with watching(loop.client, gated) as watch:
        await loop.send(gated, "2+3?", wait=False)
        asked = await watch.until("tool.approval_requested")
        answer = {"decision": "approve"}
        decided = await loop.client.post(approval_path(gated, asked["data"]["tool_call_id"]), json=answer)
        assert decided.status_code == 200, decided.text
        await watch.until("turn.completed")
    assert (await loop.messages(gated))[2]["tool_results"][0]["result"] == {"result": 5}
    # The agent's own sessions keep the agent's configuration: no approval asked.
    await loop.send(agent, "2+3?")
    assert "tool.approval_requested" not in [e.type for e in await loop.stored(agent)]
