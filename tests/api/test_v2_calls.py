"""`POST /v2/call` and `/v2/call/stream` on a real server with full auth and the simulator as the
models, through Opper's own SDK (`opperai` 1.7.2) and raw HTTP in the seed's forms: structured
output (repaired after an invalid answer), a model list whose first model fails, streamed chunks
that reassemble into the answer, input-schema violations, unknown models, spans under a parent, the
cache, and isolation between accounts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from opperai import Opper, errors
from sqlalchemy import func, select

from core.db import Database
from core.db.models import LlmModel, LlmProvider, Span, Trace, User
from core.identity import Identity
from core.schemas.traces import SpanWrite
from core.schemas.v2_calls import CallRequest
from everloop.stack import Endpoints
from services import traces, v2_calls
from services.json_stream import assemble
from tests.api.test_auth_full import ADMIN_EMAIL, ADMIN_PASSWORD, clear_rate_limits, full_settings, register
from tests.apps import app_for
from tests.conftest import truncate_all
from tests.servers import running

RUN = uuid.uuid4().hex[:8]  # names of this run: the cache and the models are shared by every run
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
STREAMED = {
    "person": {"name": "Ada Lovelace", "languages": ["English", "French"], "age": 36},
    "note": 'said "hello"\nthen left',
    "ok": True,
}
STREAMED_SCHEMA = {
    "type": "object",
    "properties": {
        "person": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "languages": {"type": "array", "items": {"type": "string"}},
                "age": {"type": "integer"},
            },
            "required": ["name", "languages", "age"],
        },
        "note": {"type": "string"},
        "ok": {"type": "boolean"},
    },
    "required": ["person", "note", "ok"],
}


@dataclass
class Stack:
    url: str
    key: str  # the admin's API key
    http: httpx.AsyncClient  # the admin, by its key
    bob: httpx.AsyncClient  # another account, by its access token
    models: dict[str, str]  # role -> model name (model_id)

    def opper(self) -> Opper:
        return Opper(http_bearer=self.key, server_url=f"{self.url}/v2")


MODELS: dict[str, dict[str, Any]] = {
    "echo": {},
    "repair": {
        "mode": "script",
        "count_from": "start",
        "script": ['{"name": "Ada"}', '{"name": "Ada", "age": 36}'],
    },
    "never": {"mode": "fixed", "text": '{"name": 1, "age": 3}'},
    "down": {"error": {"status": 404}},
    "streamed": {"mode": "fixed", "text": json.dumps(STREAMED, indent=1)},
    "slow": {"mode": "fixed", "text": "one two three four five six seven eight", "chunk_delay": 0.5},
    "deep": {"mode": "fixed", "text": "[" * 100_000 + "]" * 100_000},
    "disabled": {},
    # A provider that refuses the structured-output request (400) and answers the same in text.
    "refuses": {
        "mode": "fixed",
        "text": '{"name": "Ada", "age": 36}',
        "error": {"status": 400, "when": "json_schema"},
    },
    "list": {"mode": "fixed", "text": "[3, 1, 2]", "error": {"status": 400, "when": "json_schema"}},
}


@pytest.fixture(scope="module")
async def stack(endpoints: Endpoints, simulator_url: str) -> AsyncIterator[Stack]:
    await clear_rate_limits(endpoints)
    with running(app_for(full_settings(endpoints), configure_logs=False)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as anon:
            login = await anon.post("/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            assert login.status_code == 200, login.text
            token = {"Authorization": f"Bearer {login.json()['access_token']}"}
            made = await anon.post("/v1/auth/api-keys", json={"name": "opper"}, headers=token)
            assert made.status_code == 201, made.text
            key = made.json()["key"]
            bob_tokens = await register(anon)
        async with (
            httpx.AsyncClient(
                base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key}"}
            ) as http,
            httpx.AsyncClient(
                base_url=server.url,
                timeout=30,
                headers={"Authorization": f"Bearer {bob_tokens['access_token']}"},
            ) as bob,
        ):
            provider = await http.post(
                "/v1/llm-providers",
                json={"name": f"Sim {RUN}", "provider_type": "simulator", "base_url": simulator_url},
            )
            assert provider.status_code == 201, provider.text
            names = {}
            for role, settings in MODELS.items():
                name = f"v2call-{RUN}-{role}"
                model = await http.post(
                    f"/v1/llm-providers/{provider.json()['id']}/models",
                    json={"model_id": name, "settings": settings},
                )
                assert model.status_code == 201, model.text
                names[role] = name
                if role == "disabled":  # an admin stopped it (a leaked key, a cost)
                    off = await http.patch(
                        f"/v1/llm-models/{model.json()['id']}", json={"status": "disabled"}
                    )
                    assert off.status_code == 200, off.text
            # An OpenAI-compatible server litellm has no structured-output entry for: the schema
            # goes into the prompt instead (the simulator then gets no `response_format`).
            plain = await http.post(
                "/v1/llm-providers",
                json={
                    "name": f"Plain {RUN}",
                    "provider_type": "openai_compatible",
                    "base_url": simulator_url,
                    "api_key": "sk-unused",  # the openai client refuses to send without one
                },
            )
            assert plain.status_code == 201, plain.text
            model = await http.post(
                f"/v1/llm-providers/{plain.json()['id']}/models", json={"model_id": f"v2call-{RUN}-plain"}
            )
            assert model.status_code == 201, model.text
            names["plain"] = f"v2call-{RUN}-plain"
            try:
                yield Stack(server.url, key, http, bob, names)
            finally:
                # Module-scoped: no test's `db` empties the tables after it, so the stack does.
                database = Database(endpoints.database_url, pool_size=1)
                await truncate_all(database)
                await database.dispose()


async def span(stack: Stack, span_id: str) -> dict[str, Any]:
    found = await stack.http.get(f"/v2/spans/{span_id}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


async def test_a_structured_call_through_the_sdk(stack: Stack) -> None:
    def call() -> Any:
        with stack.opper() as opper:
            return opper.call(
                name=f"extract-{RUN}",
                instructions="Extract the person",
                input={"text": "Ada, 36"},
                input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
                output_schema=PERSON,
                model=stack.models["echo"],
                tags={"team": "a"},
            )

    answer = await asyncio.to_thread(call)
    # The simulator's echo fills every string with the echo of the input and numbers with the minimum.
    assert answer.json_payload == {"name": answer.json_payload["name"], "age": 0}
    assert answer.json_payload["name"].startswith("Echo: ") and answer.message is None
    assert answer.cached is False
    assert answer.usage is not None and answer.usage["total_tokens"] == (
        answer.usage["input_tokens"] + answer.usage["output_tokens"]
    )
    assert answer.usage["input_tokens"] > 0 and answer.cost is not None and "total" in answer.cost
    recorded = await span(stack, answer.span_id)
    assert recorded["type"] == "call" and recorded["name"] == f"extract-{RUN}"
    assert recorded["input"] == {"text": "Ada, 36"} and recorded["output"] == answer.json_payload
    assert recorded["meta"]["tags"] == {"team": "a"} and recorded["status"] == "ok"
    assert recorded["input_tokens"] == answer.usage["input_tokens"]


async def test_text_without_an_output_schema(stack: Stack) -> None:
    answer = await stack.http.post(
        "/v2/call", json={"name": f"t-{RUN}", "input": "hello", "model": stack.models["echo"]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == "Echo: hello" and answer.json()["json_payload"] is None


async def test_an_invalid_answer_is_repaired(stack: Stack) -> None:
    answer = await stack.http.post(
        "/v2/call",
        json={
            "name": f"repair-{RUN}",
            "input": "Ada",
            "output_schema": PERSON,
            "model": stack.models["repair"],
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["json_payload"] == {"name": "Ada", "age": 36}
    trace = (await span(stack, answer.json()["span_id"]))["trace_id"]
    found = (await stack.http.get(f"/v2/traces/{trace}/spans")).json()
    requests = sorted((s for s in found["spans"] if s["type"] == "llm"), key=lambda s: s["id"])
    assert [s["status"] for s in requests] == ["error", "ok"]
    assert "'age' is a required property" in requests[0]["error"]
    # Both requests cost tokens, and the call's span restates their sum: the trace counts each once.
    usage = answer.json()["usage"]
    assert usage["input_tokens"] == sum(s["input_tokens"] for s in requests) > 0
    assert (found["input_tokens"], found["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])


async def model_requests(stack: Stack, span_id: str) -> list[dict[str, Any]]:
    trace = (await span(stack, span_id))["trace_id"]
    spans = (await stack.http.get(f"/v2/traces/{trace}/spans")).json()["spans"]
    return sorted(
        (s for s in spans if s["type"] == "llm" and s["parent_id"] == span_id), key=lambda s: s["id"]
    )


async def test_a_structured_mode_refused_with_a_400_is_asked_again_in_the_prompt(stack: Stack) -> None:
    body = {
        "name": f"refused-{RUN}",
        "input": "Ada",
        "output_schema": PERSON,
        "model": stack.models["refuses"],
    }
    answer = await stack.http.post("/v2/call", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["json_payload"] == {"name": "Ada", "age": 36}
    requests = await model_requests(stack, answer.json()["span_id"])
    assert [s["status"] for s in requests] == ["error", "ok"]
    assert "HTTP 400" in requests[0]["error"] and "schema in the prompt" in requests[0]["error"]
    # The stream falls back the same way (nothing of the refused request was sent).
    async with stack.http.stream("POST", "/v2/call/stream", json=body) as response:
        text = "".join([piece async for piece in response.aiter_text()])
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert [e["chunk_type"] for e in events if e["chunk_type"] != "json"] == []
    assert assemble([(e["json_path"], e["delta"]) for e in events]) == {"name": "Ada", "age": 36}


async def test_a_non_object_root_schema_goes_by_the_prompt(stack: Stack) -> None:
    # OpenAI refuses a non-object root in json_schema mode; the model here would too (a 400), so a
    # single clean model request proves the prompt mode was used from the start.
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 3}
    answer = await stack.http.post(
        "/v2/call",
        json={"name": f"list-{RUN}", "input": "x", "output_schema": schema, "model": stack.models["list"]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["json_payload"] == [3, 1, 2]
    requests = await model_requests(stack, answer.json()["span_id"])
    assert [(s["status"], s["error"]) for s in requests] == [("ok", None)]
    short = await stack.http.post(
        "/v2/call",
        json={
            "name": f"list-short-{RUN}",
            "input": "x",
            "output_schema": {**schema, "minItems": 4},
            "model": stack.models["list"],
            "configuration": {"invocation.structured_generation.max_attempts": 1},
        },
    )
    assert short.status_code == 502 and "is too short" in short.json()["detail"]


async def test_an_answer_that_never_fits_is_a_502_naming_the_violation(stack: Stack) -> None:
    answer = await stack.http.post(
        "/v2/call",
        json={"name": f"never-{RUN}", "input": "x", "output_schema": PERSON, "model": stack.models["never"]},
    )
    assert answer.status_code == 502, answer.text
    detail = answer.json()["detail"]
    assert "after 2 repairs" in detail and "$.name: 1 is not of type 'string'" in detail


async def test_a_model_that_never_fits_the_schema_hands_over_to_the_next(stack: Stack) -> None:
    body = {
        "name": f"never-then-echo-{RUN}",
        "input": "x",
        "output_schema": PERSON,
        "model": [stack.models["never"], stack.models["echo"]],
    }
    answer = await stack.http.post("/v2/call", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["json_payload"]["age"] == 0  # the echo's: the minimum
    requests = await model_requests(stack, answer.json()["span_id"])
    # The first model's answer and its two repairs, then the next model's answer.
    assert [(s["status"], s["model"]) for s in requests] == [
        *[("error", f"openai/{stack.models['never']}")] * 3,
        ("ok", f"openai/{stack.models['echo']}"),
    ]
    recorded = await span(stack, answer.json()["span_id"])
    assert recorded["model"] == f"openai/{stack.models['echo']}" and recorded["status"] == "ok"
    # Only when every model fails is it a 502, naming each one's last violation.
    both = await stack.http.post("/v2/call", json={**body, "model": [stack.models["never"]] * 2})
    assert both.status_code == 502, both.text
    detail = both.json()["detail"]
    assert detail.startswith("every model failed") and detail.count("after 2 repairs") == 2


async def test_the_next_model_answers_when_the_first_fails(stack: Stack) -> None:
    def call() -> Any:
        with stack.opper() as opper:
            return opper.call(
                name=f"fallback-{RUN}", input="hi", model=[stack.models["down"], stack.models["echo"]]
            )

    answer = await asyncio.to_thread(call)
    assert answer.message == "Echo: hi"
    recorded = await span(stack, answer.span_id)
    assert recorded["model"] == f"openai/{stack.models['echo']}"
    failed = await stack.http.post(
        "/v2/call", json={"name": f"down-{RUN}", "input": "hi", "model": [stack.models["down"]] * 2}
    )
    assert failed.status_code == 502
    detail = failed.json()["detail"]
    assert detail.startswith("every model failed") and detail.count("does not know this model") == 2


async def test_stream_chunks_reassemble_into_the_answer(stack: Stack) -> None:
    def stream() -> list[Any]:
        with stack.opper() as opper:
            response = opper.stream(
                name=f"stream-{RUN}",
                input="who?",
                output_schema=STREAMED_SCHEMA,
                model=stack.models["streamed"],
            )
            with response.result as events:
                return [event.data for event in events]

    chunks = await asyncio.to_thread(stream)
    assert {c.chunk_type for c in chunks} == {"json"} and len({c.span_id for c in chunks}) == 1
    assert assemble([(c.json_path, c.delta) for c in chunks]) == STREAMED
    paths = {c.json_path for c in chunks}
    assert {"person.name", "person.languages[0]", "person.languages[1]", "person.age", "note", "ok"} == paths
    # Several deltas for one string: the simulator streams a word at a time.
    assert len([c for c in chunks if c.json_path == "person.name"]) > 1
    recorded = await span(stack, chunks[0].span_id)
    assert recorded["output"] == STREAMED and recorded["status"] == "ok"


async def test_stream_text_and_errors_over_raw_sse(stack: Stack) -> None:
    async def events(body: dict[str, Any]) -> list[dict[str, Any]]:
        async with stack.http.stream("POST", "/v2/call/stream", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            text = "".join([piece async for piece in response.aiter_text()])
        return [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]

    text = await events({"name": f"s-{RUN}", "input": "hello there", "model": stack.models["echo"]})
    assert {e["chunk_type"] for e in text} == {"text"} and "".join(
        e["delta"] for e in text
    ) == "Echo: hello there"
    broken = await events(
        {"name": f"s-{RUN}", "input": "x", "output_schema": PERSON, "model": stack.models["never"]}
    )
    assert broken[-1]["chunk_type"] == "error" and broken[-1]["error_type"] == "output_schema_violation"
    assert "$.name" in broken[-1]["error_message"]
    down = await events({"name": f"s-{RUN}", "input": "x", "model": [stack.models["down"]]})
    assert [e["chunk_type"] for e in down] == ["error"] and "every model failed" in down[0]["error_message"]
    bad = await stack.http.post("/v2/call/stream", json={"name": "s", "model": "no-such-model"})
    assert bad.status_code == 400 and "GET /v2/models" in bad.json()["detail"]


async def test_input_schema_violations_are_422_naming_the_path(stack: Stack) -> None:
    body = {
        "name": f"in-{RUN}",
        "input": {"person": {"age": "old"}},
        "input_schema": {
            "type": "object",
            "properties": {"person": {"type": "object", "properties": {"age": {"type": "integer"}}}},
        },
        "model": stack.models["echo"],
    }
    answer = await stack.http.post("/v2/call", json=body)
    assert answer.status_code == 422
    assert (
        answer.json()["detail"]
        == "input does not match input_schema at $.person.age: 'old' is not of type 'integer'"
    )

    def call() -> Any:
        with stack.opper() as opper:
            return opper.call(**body)

    with pytest.raises(errors.RequestValidationError):
        await asyncio.to_thread(call)
    not_a_schema = await stack.http.post("/v2/call", json={**body, "input_schema": {"type": "no-type"}})
    assert not_a_schema.status_code == 422 and "input_schema is not a valid JSON Schema" in not_a_schema.text
    nowhere = await stack.http.post(
        "/v2/call", json={**body, "input_schema": {"$ref": "https://example.com/s.json"}}
    )
    assert nowhere.status_code == 422 and "input_schema: a $ref cannot be resolved" in nowhere.text


async def test_an_unknown_model_is_a_400(stack: Stack) -> None:
    answer = await stack.http.post("/v2/call", json={"name": "x", "model": ["nope-model"]})
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("model[0]: no chat model you may use is named 'nope-model'")

    def call() -> Any:
        with stack.opper() as opper:
            return opper.call(name="x", model="nope-model")

    with pytest.raises(errors.BadRequestError):
        await asyncio.to_thread(call)


async def test_a_calls_own_trace_ends_ok_or_error(stack: Stack) -> None:
    async def trace_of(span_id: str) -> dict[str, Any]:
        found = await stack.http.get(f"/v2/traces/{(await span(stack, span_id))['trace_id']}")
        assert found.status_code == 200, found.text
        body: dict[str, Any] = found.json()
        return body

    done = await stack.http.post(
        "/v2/call", json={"name": f"st-{RUN}", "input": "x", "model": stack.models["echo"]}
    )
    assert done.status_code == 200, done.text
    assert (await trace_of(done.json()["span_id"]))["status"] == "ok"
    failed = await stack.http.post(
        "/v2/call",
        json={"name": f"st-{RUN}", "input": "x", "output_schema": PERSON, "model": stack.models["never"]},
    )
    assert failed.status_code == 502
    # The 502's body has no span id: the failed call is its trace's one `call` span named so.
    listed = (await stack.http.get("/v2/traces", params={"limit": 100})).json()["data"]
    statuses = {t["status"] for t in listed if t["name"] == f"st-{RUN}"}
    assert statuses == {"ok", "error"}
    # Under a parent the trace is its writer's: the call leaves its status alone.
    parent = await stack.http.post("/v2/spans", json={"name": f"st-root-{RUN}", "type": "agent"})
    assert parent.status_code == 201, parent.text
    child = await stack.http.post(
        "/v2/call",
        json={
            "name": f"st-child-{RUN}",
            "input": "x",
            "parent_span_id": parent.json()["id"],
            "output_schema": PERSON,
            "model": stack.models["never"],
        },
    )
    assert child.status_code == 502
    held = (await stack.http.get(f"/v2/traces/{parent.json()['trace_id']}")).json()
    assert held["status"] == "unset" and held["span_count"] == 5  # the root, the call, 3 requests


async def test_concurrent_calls_under_one_parent_keep_the_trace_totals(endpoints: Endpoints) -> None:
    # Calls under one parent written at once (each holds its transaction a moment, as a request
    # does until its commit): the parent trace's totals count every one of them.
    database = Database(endpoints.database_url, pool_size=25)
    try:
        async with database.session() as session:
            owner = User(email=f"{uuid.uuid4().hex[:10]}@example.com")
            session.add(owner)
            await session.commit()
            owner_id = owner.id

        def written(span_id: str, parent: str | None) -> SpanWrite:
            now = datetime.now(UTC)
            return SpanWrite(
                span_id=span_id,
                parent_span_id=parent,
                name="c",
                kind="llm",
                status="ok",
                start_time=now,
                end_time=now,
                model="m",
                input_tokens=1,
                output_tokens=2,
            )

        async with database.session() as session:
            trace_pk = await traces.write_call(session, owner_id, [written("root", None)], name="root")
            await session.commit()

        async def child(number: int) -> None:
            async with database.session() as session:
                await traces.write_call(
                    session, owner_id, [written(f"c{number}", "root")], name="c", parent_span_id="root"
                )
                await asyncio.sleep(0.01)
                await session.commit()

        for wave in range(3):
            await asyncio.gather(*(child(wave * 100 + n) for n in range(20)))
        async with database.session() as session:
            stored, tokens = (
                await session.execute(
                    select(func.count(), func.sum(Span.input_tokens)).where(Span.trace_pk == trace_pk)
                )
            ).one()
            trace = await session.get(Trace, trace_pk)
            assert trace is not None and stored == 61 and tokens == 61
            assert (trace.span_count, trace.input_tokens, trace.output_tokens) == (61, 61, 122)
    finally:
        await database.dispose()


async def test_a_call_under_a_parent_span(stack: Stack) -> None:
    parent = await stack.http.post("/v2/spans", json={"name": f"root-{RUN}", "type": "agent"})
    assert parent.status_code == 201, parent.text
    answer = await stack.http.post(
        "/v2/call",
        json={
            "name": f"child-{RUN}",
            "input": "x",
            "parent_span_id": parent.json()["id"],
            "model": stack.models["echo"],
        },
    )
    recorded = await span(stack, answer.json()["span_id"])
    assert recorded["parent_id"] == parent.json()["id"] and recorded["trace_id"] == parent.json()["trace_id"]
    # The parent's trace totals now count the call and its model request (written in one statement).
    trace = (await stack.http.get(f"/v2/traces/{recorded['trace_id']}/spans")).json()
    assert trace["span_count"] == len(trace["spans"]) == 3
    assert trace["models_used"] == [f"openai/{stack.models['echo']}"]
    # The answer's span_id is a parent at once: the next call nests under the call just answered.
    nested = await stack.http.post(
        "/v2/call",
        json={
            "name": f"grandchild-{RUN}",
            "input": "y",
            "parent_span_id": answer.json()["span_id"],
            "model": stack.models["echo"],
        },
    )
    below = await span(stack, nested.json()["span_id"])
    assert below["parent_id"] == answer.json()["span_id"] and below["trace_id"] == recorded["trace_id"]


async def test_identical_calls_may_come_from_the_cache(stack: Stack) -> None:
    # The seed's forms: a list of models, `configuration` with plain keys, examples.
    body = {
        "name": f"cache-{RUN}",
        "instructions": "Say it",
        "input": {"q": "cached?"},
        "model": [stack.models["echo"]],
        "examples": [{"input": {"q": "a"}, "output": "Echo: a", "comment": "as is"}],
        "configuration": {"cache": True, "few_shot_count": 2},
    }
    first = (await stack.http.post("/v2/call", json=body)).json()
    second = (await stack.http.post("/v2/call", json=body)).json()
    assert first["cached"] is False and second["cached"] is True
    assert second["message"] == first["message"] and second["span_id"] != first["span_id"]
    assert second["usage"]["total_tokens"] == 0
    assert (await span(stack, second["span_id"]))["meta"]["cached"] is True
    uncached = (await stack.http.post("/v2/call", json={**body, "configuration": {}})).json()
    assert uncached["cached"] is False
    other_input = (await stack.http.post("/v2/call", json={**body, "input": {"q": "other"}})).json()
    assert other_input["cached"] is False

    def sdk_call() -> Any:  # the SDK's own cache setting
        with stack.opper() as opper:
            return opper.call(
                name=f"cache-sdk-{RUN}",
                input="once",
                model=stack.models["echo"],
                configuration={"invocation.cache.ttl": 60},
            )

    assert (await asyncio.to_thread(sdk_call)).cached is False
    assert (await asyncio.to_thread(sdk_call)).cached is True
    # A stream of the same call is answered from the cache too.
    async with stack.http.stream("POST", "/v2/call/stream", json=body) as response:
        text = "".join([piece async for piece in response.aiter_text()])
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert "".join(e["delta"] for e in events) == first["message"]
    assert (await span(stack, events[0]["span_id"]))["meta"]["cached"] is True
    # Another account's identical call is not answered from the first account's cache.
    bobs = await stack.bob.post("/v2/call", json={**body, "model": [stack.models["echo"]]})
    assert bobs.status_code == 200 and bobs.json()["cached"] is False


FEW_SHOT_ENTRIES = [
    ("the capital city of France", "Paris"),
    ("how to bake sourdough bread at home", "flour, water, salt, time"),
    ("weather forecast for Stockholm tomorrow", "cold and dark"),
]


async def test_few_shot_examples_come_from_the_function_named_as_the_call(stack: Stack) -> None:
    # The simulator's embeddings are lexical (shared words: near vectors); the shared provider's
    # embedding model is everyone's default.
    providers = (await stack.http.get("/v1/llm-providers")).json()
    sim = next(p["id"] for p in providers if p["name"] == f"Sim {RUN}")
    embedder = await stack.http.post(
        f"/v1/llm-providers/{sim}/models", json={"model_id": f"v2call-{RUN}-embed", "kind": "embedding"}
    )
    assert embedder.status_code == 201, embedder.text
    name = f"fs-{RUN}"
    function = await stack.http.post("/v2/functions", json={"name": name, "instructions": "Answer."})
    assert function.status_code == 201, function.text
    for question, answer in FEW_SHOT_ENTRIES:  # the nearest entry first, the newest last
        entry = await stack.http.post(
            f"/v2/datasets/{function.json()['dataset_id']}/entries",
            json={"input": question, "output": answer},
        )
        assert entry.status_code == 201, entry.text

    async def prompt_tokens(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
        # The prompt's size: the echo's answer is the input only, the examples are in the prompt.
        answer = await client.post(
            "/v2/call",
            json={"name": name, "input": "France's capital city", "model": stack.models["echo"], **body},
        )
        assert answer.status_code == 200, answer.text
        tokens: int = answer.json()["usage"]["input_tokens"]
        return tokens

    def given(number: int) -> dict[str, Any]:
        question, answer = FEW_SHOT_ENTRIES[number]
        return {"examples": [{"input": question, "output": answer}]}

    drawn = await prompt_tokens(stack.http, {"configuration": {"few_shot_count": 1}})
    # The prompt is the one with the nearest entry as the example (not the newest: by similarity).
    assert drawn == await prompt_tokens(stack.http, given(0))
    assert drawn != await prompt_tokens(stack.http, given(2))
    assert drawn > await prompt_tokens(stack.http, {})
    assert await prompt_tokens(stack.http, {"configuration": {"invocation.few_shot.count": 1}}) == drawn
    # The caller's own examples come first, the drawn ones after.
    both = await prompt_tokens(stack.http, {**given(2), "configuration": {"few_shot_count": 1}})
    assert both > drawn
    # Another account has no function of that name: no examples (nor any of the first account's).
    bobs = await prompt_tokens(stack.bob, {"configuration": {"few_shot_count": 1}})
    assert bobs == await prompt_tokens(stack.bob, {})
    # Streamed the same: the prompt takes the example (its span's model request counts the tokens).
    async with stack.http.stream(
        "POST",
        "/v2/call/stream",
        json={
            "name": name,
            "input": "France's capital city",
            "model": stack.models["echo"],
            "configuration": {"few_shot_count": 1},
        },
    ) as response:
        text = "".join([piece async for piece in response.aiter_text()])
    span_id = json.loads(text.split("\n")[0][6:])["span_id"]
    assert (await span(stack, span_id))["input_tokens"] == drawn


async def test_another_account_cannot_read_the_span(stack: Stack) -> None:
    answer = (
        await stack.http.post(
            "/v2/call", json={"name": f"mine-{RUN}", "input": "x", "model": stack.models["echo"]}
        )
    ).json()
    assert (await stack.bob.get(f"/v2/spans/{answer['span_id']}")).status_code == 404
    # Bob names Alice's span as a parent: his call starts a trace of his own.
    bobs = (
        await stack.bob.post(
            "/v2/call",
            json={
                "name": "b",
                "input": "x",
                "parent_span_id": answer["span_id"],
                "model": stack.models["echo"],
            },
        )
    ).json()
    theirs = (await stack.bob.get(f"/v2/spans/{bobs['span_id']}")).json()
    assert theirs["trace_id"] != (await span(stack, answer["span_id"]))["trace_id"]
    # ...of which the call is the root: no parent it cannot see (nor one that does not exist).
    assert theirs["parent_id"] is None
    unknown = (
        await stack.http.post(
            "/v2/call",
            json={"name": "u", "input": "x", "parent_span_id": "no-such-span", "model": stack.models["echo"]},
        )
    ).json()
    root = await span(stack, unknown["span_id"])
    assert root["parent_id"] is None
    spans = (await stack.http.get(f"/v2/traces/{root['trace_id']}/spans")).json()["spans"]
    assert [s["id"] for s in spans if s["parent_id"] is None] == [unknown["span_id"]]


async def test_a_model_without_structured_output_gets_the_schema_in_its_prompt(stack: Stack) -> None:
    # The simulator's echo answers JSON only when asked with `response_format`: here it is not, so it
    # echoes the prompt's text, which is not JSON, and each repair gets the same.
    answer = await stack.http.post(
        "/v2/call",
        json={
            "name": f"plain-{RUN}",
            "input": "Ada",
            "output_schema": PERSON,
            "model": stack.models["plain"],
        },
    )
    assert answer.status_code == 502, answer.text
    assert "the last violation: the answer is not JSON" in answer.json()["detail"]
    data = msgspec.convert({"name": "n", "input": "Ada", "output_schema": PERSON}, CallRequest)
    system = v2_calls.messages(data, structured=False)[0]["content"]
    assert "Answer with only a JSON value" in system and json.dumps(PERSON) in system
    assert "Answer with only" not in v2_calls.messages(data, structured=True)[0]["content"]


async def test_a_client_that_leaves_mid_stream_leaves_an_error_span(stack: Stack) -> None:
    body = {"name": f"left-{RUN}", "input": "x", "model": stack.models["slow"]}
    async with stack.http.stream("POST", "/v2/call/stream", json=body) as response:
        first = await anext(response.aiter_lines())  # one word of eight, then away
    span_id = json.loads(first[6:])["span_id"]
    # The server notices the closed connection at its next write: the span follows.
    deadline = asyncio.get_running_loop().time() + 10
    while (found := await stack.http.get(f"/v2/spans/{span_id}")).status_code == 404:
        assert asyncio.get_running_loop().time() < deadline, "no span for the abandoned stream"
        await asyncio.sleep(0.1)
    assert found.json()["status"] == "error" and found.json()["error"] == "the client left before the end"


async def test_a_pattern_that_backtracks_is_a_422_not_a_stalled_server(stack: Stack) -> None:
    # Python's `re` takes ages on this (2^n); the `regex` module's timeout stops it.
    body = {
        "name": f"redos-{RUN}",
        "input": "a" * 5000 + "!",
        "input_schema": {"type": "string", "pattern": "^(a|aa)+$"},
        "model": stack.models["echo"],
    }
    started = time.monotonic()
    answer = await stack.http.post("/v2/call", json=body)
    assert answer.status_code == 422 and "pattern took too long" in answer.json()["detail"], answer.text
    assert time.monotonic() - started < 5
    keyed = {
        "type": "object",
        "patternProperties": {"^(x|xx)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    answer = await stack.http.post(
        "/v2/call", json={**body, "input": {"x" * 5000 + "!": 1}, "input_schema": keyed}
    )
    assert answer.status_code == 422 and "pattern took too long" in answer.json()["detail"], answer.text
    # Patterns still work: a match, a mismatch, the keys patternProperties admits.
    fine = await stack.http.post("/v2/call", json={**body, "input": "aaa"})
    assert fine.status_code == 200, fine.text
    miss = await stack.http.post("/v2/call", json={**body, "input": "b"})
    assert miss.status_code == 422 and "'b' does not match" in miss.json()["detail"]
    admitted = await stack.http.post("/v2/call", json={**body, "input": {"xx": 1}, "input_schema": keyed})
    assert admitted.status_code == 200, admitted.text
    extra = await stack.http.post("/v2/call", json={**body, "input": {"y": 1}, "input_schema": keyed})
    assert extra.status_code == 422 and "'y' do not match any of the regexes" in extra.json()["detail"]
    # A schema's size is capped; a validator is built once per schema.
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(5000)}}
    too_big = await stack.http.post("/v2/call", json={**body, "input": {}, "input_schema": huge})
    assert too_big.status_code == 422 and "a schema is at most" in too_big.json()["detail"]
    assert v2_calls.validator_for(dict(PERSON), "s") is v2_calls.validator_for(dict(PERSON), "s")


async def test_a_disabled_model_is_refused_with_a_400(stack: Stack) -> None:
    body = {"name": f"off-{RUN}", "input": "hi", "model": stack.models["disabled"]}
    answer = await stack.http.post("/v2/call", json=body)
    assert answer.status_code == 400, answer.text
    assert (
        answer.json()["detail"]
        == f"model: {stack.models['disabled']!r} is disabled (the model is not active)"
    )
    streamed = await stack.http.post("/v2/call/stream", json=body)
    assert streamed.status_code == 400


async def test_an_answer_nested_too_deeply_is_a_violation_not_a_500(stack: Stack) -> None:
    answer = await stack.http.post(
        "/v2/call",
        json={
            "name": f"deep-{RUN}",
            "input": "x",
            "output_schema": {"type": "array"},
            "model": stack.models["deep"],
        },
    )
    assert answer.status_code == 502, answer.text
    assert answer.json()["detail"].endswith("the last violation: the answer is nested too deeply")


async def test_an_answer_above_the_cache_bound_is_not_cached(stack: Stack) -> None:
    body = {
        "name": f"big-{RUN}",
        "input": "x" * (v2_calls.CACHE_MAX_ENTRY_BYTES + 10),
        "model": stack.models["echo"],
        "configuration": {"cache": True},
    }
    first = await stack.http.post("/v2/call", json=body)
    assert first.status_code == 200, first.text
    second = (await stack.http.post("/v2/call", json=body)).json()
    assert second["cached"] is False


def _target(model_id: str, settings: dict[str, Any], provider_type: str = "simulator") -> v2_calls.Target:
    provider = LlmProvider(id=uuid.UUID(int=1), provider_type=provider_type, name="p")
    model = LlmModel(id=uuid.UUID(int=2), provider_id=provider.id, model_id=model_id, settings=settings)
    return v2_calls.Target(model, provider, "alias", {})


def test_the_cache_key_changes_with_the_model_behind_an_id() -> None:
    who = Identity(user_id=uuid.UUID(int=3), email="a@example.com", role="user", method="api_key")
    data = msgspec.convert({"name": "n", "input": "x"}, CallRequest)
    first = v2_calls._cache_key(who, data, [_target("gpt-4o", {})])
    assert first == v2_calls._cache_key(who, data, [_target("gpt-4o", {})])
    assert first != v2_calls._cache_key(who, data, [_target("gpt-4o-mini", {})])  # PATCHed identifier
    assert first != v2_calls._cache_key(who, data, [_target("gpt-4o", {"temperature": 0.2})])


def test_only_an_object_root_goes_by_structured_output() -> None:
    target = _target("m", {})
    access: Any = None  # a simulator target needs no litellm lookup
    assert v2_calls.structured_mode(access, target, PERSON)
    for root in ({"type": "string"}, {"type": "array", "items": {"type": "integer"}}, {}, None):
        assert not v2_calls.structured_mode(access, target, root)
