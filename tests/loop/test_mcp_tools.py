"""MCP servers' tools through whole turns: the simulator calls them by the names the model sees, the
worker calls the real server (streamable HTTP on loopback, or stdio as a subprocess) through the
`mcp` SDK, and the result is stored. A server that hangs, is down or dies mid-call gives a tool
error within the tool timeout, and the turn goes on."""

from __future__ import annotations

from typing import Any

from tests.loop.conftest import Loop
from tests.loop.test_capability_tools import completed_events, results
from tests.mcp_server import serve_http, stdio_command


async def add_server(loop: Loop, **body: Any) -> dict[str, Any]:
    response = await loop.client.post("/v1/mcp-servers", json={"name": "tools", **body})
    assert response.status_code == 201, response.text
    server: dict[str, Any] = response.json()
    assert server["tools_error"] is None, server["tools_error"]
    return server


def calls(*steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A simulator script: each step's tool calls, then a final text."""
    return {"mode": "script", "script": [*({"tool_calls": step} for step in steps), "Done."]}


async def offered_tools(loop: Loop, base: str) -> list[str]:
    """The tool names the LLM was offered in the session's first reason step."""
    generation = next(e for e in await loop.stored(base) if e.type == "llm.generation")
    return [t["name"] for t in generation.data["tools"]]


async def test_http_server_tools_in_a_turn(loop: Loop) -> None:
    with serve_http() as (url, recorder):
        server = await add_server(
            loop, transport="streamable_http", url=url, headers={"Authorization": "Bearer turn-secret"}
        )
        script = calls(
            [
                {"name": "add", "arguments": {"a": 2, "b": 3}},
                {"name": "lookup_v2", "arguments": {}},
                {"name": "fail", "arguments": {}},
                {"name": "add", "arguments": {"a": "two"}},
            ]
        )
        base = await loop.chat(simulator=script, capabilities=[server["capability_id"], "current_time"])
        recorder.headers.clear()
        await loop.send(base, "use the tools")
        # The worker sent the stored headers with its calls.
        assert recorder.headers and all(
            h.get("authorization") == "Bearer turn-secret" for h in recorder.headers
        )

    add, lookup, fail, bad = [r for _, _, r in await results(loop, base)]
    assert add["error"] is None and add["result"] == {"result": 5}  # the structured content
    assert lookup["result"] == {"result": "found by its exact name"}  # `lookup_v2` is `lookup.v2`
    assert fail["result"] is None and "the tool broke on purpose" in fail["error"]
    assert bad["result"] is None and "validation error" in bad["error"]
    statuses = sorted(e["status"] for e in (await completed_events(loop, base)).values())
    assert statuses == ["error", "error", "success", "success"]
    offered = await offered_tools(loop, base)
    assert {"add", "lookup_v2", "hang", "get_current_time"} <= set(offered)

    # The model read the result: it is in the conversation of the next reason step.
    second = [e for e in await loop.stored(base) if e.type == "llm.generation"][1]
    assert [m["role"] for m in second.data["messages"]].count("tool_result") == 4  # Everruns' name


async def test_a_hanging_tool_times_out_and_the_turn_goes_on(loop: Loop) -> None:
    with serve_http() as (url, _):
        server = await add_server(loop, transport="streamable_http", url=url, timeout_s=2)
        base = await loop.chat(
            simulator=calls(
                [{"name": "hang", "arguments": {}}, {"name": "add", "arguments": {"a": 1, "b": 1}}]
            ),
            capabilities=[server["capability_id"]],
        )
        frames = await loop.send(base, "wait for it")
    assert frames[-1]["type"] == "turn.completed"
    (_, _, hang), (_, _, add) = await results(loop, base)
    assert hang["result"] is None and "did not finish within 2 s" in hang["error"]
    assert add["result"] == {"result": 2}  # a parallel call is not held up
    events = await completed_events(loop, base)
    assert sorted(e["status"] for e in events.values()) == ["success", "timeout"]


async def test_a_server_that_is_down_is_a_tool_error_and_its_tools_stay_listed(loop: Loop) -> None:
    with serve_http() as (url, _):
        server = await add_server(loop, transport="streamable_http", url=url)
    # The server is gone; the turn still offers its cached tools, and calling one is a tool error.
    base = await loop.chat(
        simulator=calls([{"name": "shout", "arguments": {"text": "anyone?"}}]),
        capabilities=[server["capability_id"]],
    )
    frames = await loop.send(base, "hello?")
    assert frames[-1]["type"] == "turn.completed"  # the refused connection is an error at once
    ((_, _, shout),) = await results(loop, base)
    assert shout["result"] is None and "MCP server 'tools' failed" in shout["error"]
    assert "shout" in await offered_tools(loop, base)


async def test_stdio_server_tools_and_a_server_that_dies_mid_call(loop: Loop) -> None:
    server = await add_server(loop, transport="stdio", timeout_s=30, **stdio_command())
    base = await loop.chat(
        simulator=calls(
            [{"name": "shout", "arguments": {"text": "hi there"}}],
            [{"name": "die", "arguments": {}}],
            [{"name": "add", "arguments": {"a": 40, "b": 2}}],
        ),
        capabilities=[server["capability_id"]],
    )
    frames = await loop.send(base, "go", timeout=60)
    assert frames[-1]["type"] == "turn.completed"
    (_, _, shout), (_, _, die), (_, _, add) = await results(loop, base)
    assert shout["result"] == {"result": "HI THERE"}
    # The death is seen at once, as the server's failure: not the call's 30 s timeout running out
    # (a clock here would fail on a loaded machine; the error says which it was).
    assert die["result"] is None and "MCP server 'tools' failed" in die["error"]
    assert "did not finish within" not in die["error"]  # the timeout's error (status `timeout`)
    # Each call starts the server afresh: the next call works.
    assert add["result"] == {"result": 42}
    events = await completed_events(loop, base)
    assert sorted(e["status"] for e in events.values()) == ["error", "success", "success"]
