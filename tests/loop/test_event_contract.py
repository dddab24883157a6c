"""What real turns store and stream is the events contract (core/schemas/events.py), exactly: every
stored event's `data` is its type's payload Struct without the tag (same keys, null where null,
absent where absent), every live-only frame is an `EphemeralData` in the `LiveEvent` envelope,
everything matches the OpenAPI document and parses as Everruns' SDK `Event`, and the contract has no
type the loop does not emit."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import msgspec
from everruns_sdk.models import Event as SdkEvent
from jsonschema_rs import Draft202012Validator

from core.schemas import events as ev
from services import event_log
from tests.loop.conftest import Loop
from tests.loop.test_client_tools import client_chat

EVENTS = "/v1/agents/{agent_id}/sessions/{session_id}/events"
STREAMS = ("/v1/agents/{agent_id}/sessions/{session_id}/sse", "/v1/sessions/{session_id}/sse")

SCRIPT = [
    {
        "tool_calls": [
            {"name": "add", "arguments": {"a": 2, "b": 3}},
            {"name": "multiply", "arguments": {"a": 2, "b": 3}},
        ]
    },
    "Done.",
]
GATED: list[Any] = [{"id": "test_math", "config": {"require_approval": ["add"]}}]


class Seen:
    """What the turns of a test stored (from PostgreSQL and the events list) and streamed (SSE)."""

    def __init__(self, loop: Loop, spec: dict[str, Any]) -> None:
        self.loop = loop
        self.spec = spec
        self.types: set[str] = set()

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        return Draft202012Validator({**schema, "components": self.spec["components"]})

    async def session(self, base: str, frames: list[dict[str, Any]]) -> None:
        for row in await self.loop.stored(base):
            # Decoded as its type's payload, and encoded back to exactly what is stored.
            assert ev.to_data(ev.from_data(row.type, row.data)) == row.data, row.type
            self.types.add(row.type)
        listed = (await self.loop.client.get(f"{base}/events", params={"limit": 200})).json()
        self.validator({"$ref": "#/components/schemas/EventPage"}).validate(listed)
        for path in (EVENTS, *STREAMS):  # the same frame schema on `/events` and both `/sse`
            operation = self.spec["paths"][path]["get"]
            sse = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]
            frame_schema = self.validator(sse["properties"]["data"]["contentSchema"])
            for frame in frames:
                frame_schema.validate(frame)
        for frame in frames:
            # Everruns' SDK parses every frame into its Event model (a refused one ends its stream).
            SdkEvent(**frame)
            if frame["sequence"] is not None:  # a stored event, as the stream sends it
                event = msgspec.convert(frame, ev.Event)
                assert ev.to_data(ev.from_data(event.type, event.data)) == event.data, event.type
            else:
                # Issue 12: a live frame has the stored envelope (with an id and ts, sequence null).
                envelope = msgspec.convert(frame, ev.LiveEvent)
                assert event_log.live_position(envelope.id) is not None
                live = msgspec.convert({**frame["data"], "type": frame["type"]}, ev.EphemeralData)
                assert ev.to_data(live) == frame["data"], frame["type"]
                assert set(frame) == set(ev.LiveEvent.__struct_fields__)
            self.types.add(frame["type"])


async def _waiting_call(loop: Loop, base: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in await loop.stored(base):
            if event.type == ev.type_of(ev.ToolApprovalRequested):
                return str(event.data["tool_call_id"])
        await asyncio.sleep(0.05)
    raise AssertionError("no tool call waits for approval")


async def _requested_call(loop: Loop, base: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in await loop.stored(base):
            if event.type == ev.type_of(ev.ToolCallRequested):
                return str(event.data["tool_calls"][0]["id"])
        await asyncio.sleep(0.05)
    raise AssertionError("no client-side tool call was requested")


async def test_turns_store_and_stream_exactly_the_contract(loop: Loop) -> None:
    seen = Seen(loop, (await loop.client.get("/api-doc/openapi.json")).json())

    # Tool calls, one waiting for a person, approved.
    base = await loop.chat(simulator={"mode": "script", "script": SCRIPT}, capabilities=GATED)
    sending = asyncio.create_task(loop.send(base, "sums"))
    call_id = await _waiting_call(loop, base)
    approved = await loop.client.post(f"{base}/tool-approvals/{call_id}", json={"decision": "approve"})
    assert approved.status_code == 200, approved.text
    await seen.session(base, await asyncio.wait_for(sending, 30))
    # A result is text parts holding its JSON, as Everruns sends it (issue 12).
    done = [e.data for e in await loop.stored(base) if e.type == ev.type_of(ev.ToolCallCompleted)]
    assert sorted(json.loads(d["result"][0]["text"])["result"] for d in done) == [5, 6]

    # A client-side tool call, answered by the client (issue 12).
    base = await client_chat(loop)
    sending = asyncio.create_task(loop.send(base, "where?"))
    call_id = await _requested_call(loop, base)
    answer = {"tool_results": [{"tool_call_id": call_id, "result": {"city": "Kyiv"}}]}
    assert (await loop.client.post(f"{base}/tool-results", json=answer)).status_code == 200
    await seen.session(base, await asyncio.wait_for(sending, 30))

    # A call retried after a 429: the client is told to drop what was streamed.
    base = await loop.chat(
        simulator={"mode": "fixed", "text": "after retry", "error": {"status": 429, "times": 1}}
    )
    # The simulator counts injected failures per conversation: a text of its own, so other tests'
    # conversations keep theirs.
    await seen.session(base, await loop.send(base, f"hi {uuid.uuid4()}"))

    # A failed turn, with its notice.
    base = await loop.chat(simulator={"mode": "fixed", "text": "never", "error": {"status": 401}})
    await seen.session(base, await loop.send(base, "hi"))

    # A cancelled turn.
    text = " ".join(f"word{i}" for i in range(100))
    base = await loop.chat(simulator={"mode": "fixed", "text": text, "chunk_delay": 0.3})
    sending = asyncio.create_task(loop.send(base, "talk slowly"))
    while not any(e.type == ev.type_of(ev.ReasonStarted) for e in await loop.stored(base)):
        await asyncio.sleep(0.05)
    assert (await loop.client.post(f"{base}/cancel")).status_code == 200
    await seen.session(base, await asyncio.wait_for(sending, 10))

    # Every type of the contract was emitted, and nothing else.
    assert seen.types == {ev.type_of(p) for p in (*ev.STORED, *ev.EPHEMERAL)}
