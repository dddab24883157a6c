"""`POST /v2/openai/chat/completions` through the official `openai` SDK (`base_url=<server>/v2/openai`)
on simulator models: answers and streams in OpenAI's shape, a tool call and its follow-up (streamed
too), usage, a span per call (tokens, model, input and output; an error span for a failure), a
provider's failure as the 502 the SDK raises `InternalServerError` for, an unknown model as its 400,
and a custom model called by its name."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_v2_models import Stack, made, v2_stack

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_SCRIPT = {
    "mode": "script",
    "script": [{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}, "Sunny in Paris."],
}


@pytest.fixture
async def stack(endpoints: Endpoints, db: Database, simulator_url: str) -> AsyncIterator[Stack]:
    async with v2_stack(endpoints) as running_stack:
        admin = running_stack.admin.http
        # The deployment's simulator models, usable by every user.
        sim = await made(
            admin,
            "/v1/llm-providers",
            {"name": "Sim", "provider_type": "simulator", "base_url": simulator_url},
        )
        for model_id, settings in (
            ("sim-echo", {"mode": "echo"}),
            ("sim-weather", WEATHER_SCRIPT),
            ("sim-broken", {"mode": "echo", "error": {"status": 500}}),
            ("sim-off", {"mode": "echo"}),
        ):
            model = await made(
                admin, f"/v1/llm-providers/{sim['id']}/models", {"model_id": model_id, "settings": settings}
            )
        # The last one an admin disabled.
        disabled = await admin.patch(f"/v1/llm-models/{model['id']}", json={"status": "disabled"})
        assert disabled.status_code == 200, disabled.text
        yield running_stack


def client_of(stack: Stack) -> openai.OpenAI:
    # No retries: a 502 is seen once (the SDK would retry 5xx twice by default).
    return openai.OpenAI(base_url=f"{stack.url}/v2/openai", api_key=stack.alice.key, max_retries=0)


async def span_of(stack: Stack, span_id: str) -> dict[str, Any]:
    response = await stack.alice.http.get(f"/v2/spans/{span_id}")
    assert response.status_code == 200, response.text
    span: dict[str, Any] = response.json()
    return span


async def test_chat_completions_through_the_openai_sdk(stack: Stack, simulator_url: str) -> None:
    client = client_of(stack)
    user: Any = [{"role": "user", "content": "hello there"}]

    raw = client.chat.completions.with_raw_response.create(model="openai/sim-echo", messages=user)
    answer = raw.parse()
    assert answer.object == "chat.completion" and answer.id and answer.created > 0
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Echo: hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    span = await span_of(stack, raw.headers["x-span-id"])
    assert span["type"] == "llm" and span["status"] == "ok" and span["model"] == "openai/sim-echo"
    assert span["input"]["messages"] == user and span["output"]["content"] == "Echo: hello there"
    assert span["input_tokens"] == answer.usage.prompt_tokens
    assert span["output_tokens"] == answer.usage.completion_tokens

    # A tool call, then the answer after the tool's result.
    asked = client.chat.completions.create(
        model="openai/sim-weather",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        temperature=0.1,
    )
    choice = asked.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    follow_up: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    done = client.chat.completions.create(
        model="openai/sim-weather", messages=follow_up, tools=[WEATHER_TOOL]
    )
    assert done.choices[0].message.content == "Sunny in Paris." and not done.choices[0].message.tool_calls

    # Streamed: chunks that reassemble into the answer, then [DONE] (the SDK stops there), with
    # usage in a last chunk when asked for.
    request_id = uuid.uuid4().hex
    with client.chat.completions.with_streaming_response.create(
        model="openai/sim-echo",
        messages=[{"role": "user", "content": "stream me a reply"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Request-ID": request_id},
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        streamed_span = streamed.headers["x-span-id"]
        chunks = list(streamed.parse())
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me a reply" and len(chunks) > 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    await stack.server.finished(request_id)  # the span is written when the stream ends
    span = await span_of(stack, streamed_span)
    assert span["output"]["content"] == text and span["output_tokens"] == chunks[-1].usage.completion_tokens

    # A streamed tool call: its arguments arrive in fragments.
    pieces: list[ChatCompletionChunk] = list(
        client.chat.completions.create(
            model="openai/sim-weather",
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    assert not any(p.usage for p in pieces)  # not asked for
    fragments = [
        t.function for p in pieces if p.choices for t in (p.choices[0].delta.tool_calls or []) if t.function
    ]
    assert fragments[0].name == "get_weather"
    assert json.loads("".join(f.arguments or "" for f in fragments)) == {"city": "Paris"}
    assert [p.choices[0].finish_reason for p in pieces if p.choices][-1] == "tool_calls"

    # A provider that fails: 502, OpenAI's error object (and the /v2 detail), an error span.
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.with_raw_response.create(model="openai/sim-broken", messages=user)
    assert failed.value.status_code == 502
    body = failed.value.body
    assert isinstance(body, dict) and body["code"] == 502 and body["type"] == "api_error"  # OpenAI's `error`
    assert "the provider failed" in failed.value.message
    failed_span = (await stack.alice.http.get("/v2/traces?name=openai.chat")).json()
    assert failed_span["meta"]["total_count"] == 6
    assert sum(t["status"] == "error" for t in failed_span["data"]) == 1
    with pytest.raises(openai.InternalServerError):  # a stream that cannot start fails the same way
        client.chat.completions.create(model="openai/sim-broken", messages=user, stream=True)
    traced = (await stack.alice.http.get("/v2/traces?name=openai.chat")).json()["data"]
    assert sum(t["status"] == "error" for t in traced) == 2  # the stream's failure is a span too

    # An unknown model: 400 saying where the names are.
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="nope/never", messages=user)
    assert "GET /v2/models" in unknown.value.message

    # A disabled model: a 400 saying so (the same rule as /v2/call's).
    with pytest.raises(openai.BadRequestError) as off:
        client.chat.completions.create(model="openai/sim-off", messages=user)
    assert "'openai/sim-off' is disabled" in off.value.message

    # An image on a private address is refused before the call (a provider may have this server
    # fetch it), as a turn's and a replay's are; streamed or not.
    looking: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "http://10.0.0.1/cat.png"}},
            ],
        }
    ]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="openai/sim-echo", messages=looking, stream=stream)
        assert "the image URL 'http://10.0.0.1/cat.png' is refused" in refused.value.message
    looking[0]["content"][1]["image_url"]["url"] = "data:image/png;base64,iVBORw0KGgo="
    assert client.chat.completions.create(model="openai/sim-echo", messages=looking).choices

    # Bob cannot read Alice's spans; his own list is empty.
    assert (await stack.bob.http.get(f"/v2/spans/{raw.headers['x-span-id']}")).status_code == 404
    assert (await stack.bob.http.get("/v2/traces")).json()["meta"]["total_count"] == 0

    # A custom model by its name: the admin's, with its own key, at the simulator (an admin may name
    # a loopback address; OUTBOUND_ALLOW_LOOPBACK lets the pinned client reach it).
    registered = await stack.admin.http.post(
        "/v2/models/custom",
        json={
            "name": "team/greeter",
            "identifier": "openai/greeter",
            "api_key": "sk-greeter",
            "extra": {"api_base": simulator_url, "temperature": 0.3},
        },
    )
    assert registered.status_code == 200, registered.text
    admin = openai.OpenAI(base_url=f"{stack.url}/v2/openai", api_key=stack.admin.key, max_retries=0)
    greeted = admin.chat.completions.create(
        model="team/greeter", messages=[{"role": "user", "content": "hi"}]
    )
    assert greeted.choices[0].message.content == "Echo: hi"
    with pytest.raises(openai.BadRequestError):  # another user's custom model is no name of Alice's
        client.chat.completions.create(model="team/greeter", messages=[{"role": "user", "content": "hi"}])
