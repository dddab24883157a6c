"""The simulator's HTTP surface without litellm: body leniency, error bodies, headers, models, docs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.errors import EXCEPTION_HANDLERS
from api.simulator import create_simulator_app, simulator_router
from tests.simulator.helpers import user


async def _post(base: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{base}/chat/completions", content=content, headers={"content-type": "application/json"}
        )


def _openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


async def test_unknown_fields_and_content_parts_are_accepted(simulator_url: str) -> None:
    body = {
        "model": "anything-at-all",
        "messages": [
            {"role": "system", "content": "Be brief.", "cache_control": {"type": "ephemeral"}},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look at"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "this"},
                ],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "temperature": 0.2,
        "seed": 7,
        "response_format": {"type": "text"},
    }
    response = await _post(simulator_url, body)
    assert response.status_code == 200, response.text
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "anything-at-all"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Echo: look at\nthis"}


async def test_tool_calls_carry_json_string_arguments(simulator_url: str) -> None:
    call = {"name": "search", "arguments": {"query": "späti", "limit": 3}}
    body = {
        "model": "m",
        "messages": [user()],
        "simulator": {"mode": "script", "script": [{"tool_calls": [call]}]},
    }
    choice = (await _post(simulator_url, body)).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [tool_call] = choice["message"]["tool_calls"]
    assert tool_call["type"] == "function"
    assert tool_call["function"]["name"] == "search"
    assert json.loads(tool_call["function"]["arguments"]) == {"query": "späti", "limit": 3}


async def test_the_stream_is_server_sent_events_ending_in_done(simulator_url: str) -> None:
    body = {
        "model": "m",
        "messages": [user()],
        "stream": True,
        "simulator": {"mode": "fixed", "text": "hi there"},
    }
    response = await _post(simulator_url, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in chunk for chunk in chunks)  # not asked for


async def test_rate_limits_carry_retry_after(simulator_url: str) -> None:
    body = {"model": "m", "messages": [user()], "simulator": {"error": {"status": 429, "retry_after": 2.5}}}
    response = await _post(simulator_url, body)
    error = _openai_error(response, 429)
    assert error["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after"] == "3"
    assert response.headers["retry-after-ms"] == "2500"


async def test_an_error_may_strike_only_structured_requests(simulator_url: str) -> None:
    settings = {"error": {"status": 400, "when": "json_schema"}}
    form = {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}}
    structured = {"model": "m", "messages": [user()], "simulator": settings, "response_format": form}
    assert _openai_error(await _post(simulator_url, structured), 400)["type"] == "invalid_request_error"
    plain = await _post(simulator_url, {"model": "m", "messages": [user()], "simulator": settings})
    assert plain.status_code == 200, plain.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": [{"content": "no role"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [], "simulator": {"mode": "scripted"}}, "simulator.mode"),
        ({"model": "m", "messages": [], "simulator": {"mode": "echo", "sleep": 1}}, "simulator"),
        ({"model": "m", "messages": [], "simulator": {"error": {"status": 418}}}, "simulator.error.status"),
        (
            {"model": "m", "messages": [], "simulator": {"first_token_delay": -1}},
            "simulator.first_token_delay",
        ),
        (
            {"model": "m", "messages": [], "simulator": {"mode": "script", "script": [{"tool_calls": [{}]}]}},
            "simulator.script[0].tool_calls[0]",
        ),
    ],
    ids=[
        "malformed",
        "not-an-object",
        "no-messages",
        "no-role",
        "bad-role",
        "bad-mode",
        "unknown-setting",
        "bad-status",
        "negative-delay",
        "nameless-tool-call",
    ],
)
async def test_bad_bodies_get_openai_400s_naming_the_field(
    simulator_url: str, body: Any, param: str | None
) -> None:
    error = _openai_error(await _post(simulator_url, body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if param is not None:
        assert param in error["message"]


@pytest.mark.parametrize(
    ("simulator", "problem"),
    [
        ({"mode": "fixed"}, "needs `text`"),
        ({"mode": "script"}, "non-empty `script`"),
        ({"mode": "echo", "text": "x"}, "`text` is only for mode `fixed`"),
        ({"mode": "fixed", "text": "x", "script": ["y"]}, "only for mode `script`"),
        ({"mode": "script", "script": [{}]}, "needs `text`, `tool_calls` or both"),
    ],
)
async def test_inconsistent_settings_are_explained(
    simulator_url: str, simulator: dict[str, Any], problem: str
) -> None:
    error = _openai_error(
        await _post(simulator_url, {"model": "m", "messages": [], "simulator": simulator}), 400
    )
    assert problem in error["message"]
    assert error["param"] is not None and error["param"].startswith("simulator")


async def test_models_list(simulator_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{simulator_url}/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert "sim-1" in [model["id"] for model in body["data"]]
    assert {model["object"] for model in body["data"]} == {"model"}


async def test_unknown_paths_answer_in_openai_shape_when_standalone(simulator_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{simulator_url}/audio/speech")
        wrong_method = await http.get(f"{simulator_url}/embeddings")
    _openai_error(response, 404)
    _openai_error(wrong_method, 405)  # embeddings are POSTed


async def test_mounted_in_an_app_errors_keep_the_openai_shape() -> None:
    # As in the API: the app's own `{"error": "...", "status": N}` mapping must not reach these routes.
    app = Litestar(route_handlers=[simulator_router], exception_handlers=EXCEPTION_HANDLERS)
    async with AsyncTestClient(app=app) as client:
        invalid = await client.post("/simulator/v1/chat/completions", json={"model": "m"})
        injected = await client.post(
            "/simulator/v1/chat/completions",
            json={"model": "m", "messages": [user()], "simulator": {"error": {"status": 401}}},
        )
    for response, status in ((invalid, 400), (injected, 401)):
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_routes_are_documented() -> None:
    async with AsyncTestClient(app=create_simulator_app()) as client:
        spec = (await client.get("/api-doc/openapi.json")).json()
    post = spec["paths"]["/simulator/v1/chat/completions"]["post"]
    get = spec["paths"]["/simulator/v1/models"]["get"]
    assert post["operationId"] == "simulatorCreateChatCompletion"
    assert get["operationId"] == "simulatorListModels"
    assert post["tags"] == get["tags"] == ["simulator"]

    def ref(media: dict[str, Any]) -> str:
        return str(media["schema"]["$ref"]).rsplit("/", 1)[-1]

    assert ref(post["requestBody"]["content"]["application/json"]) == "ChatCompletionRequest"
    ok = post["responses"]["200"]["content"]
    assert ref(ok["application/json"]) == "ChatCompletion"
    assert ok["text/event-stream"]["schema"]["required"] == ["data"]
    for code in ("400", "401", "404", "429", "500", "503"):
        assert ref(post["responses"][code]["content"]["application/json"]) == "OpenAIError"
    assert ref(get["responses"]["200"]["content"]["application/json"]) == "SimulatorModelList"
    assert "simulator" in spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]
