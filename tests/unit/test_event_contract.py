"""The events contract (core/schemas/events.py) on its own, and what the OpenAPI document makes of it.
tests/loop/test_event_contract.py checks it against what real turns store and stream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from core.schemas import events as ev
from core.schemas.content import TextPart
from core.schemas.sessions import Message
from everloop.stack import Endpoints
from tests.apps import app_for
from tests.conftest import make_settings

EVENTS_PATH = "/v1/agents/{agent_id}/sessions/{session_id}/events"
FLAT_EVENTS_PATH = "/v1/sessions/{session_id}/events"
STREAM_PATHS = ("/v1/agents/{agent_id}/sessions/{session_id}/sse", "/v1/sessions/{session_id}/sse")


def _payload_structs(cls: type[ev.Payload]) -> set[type[ev.Payload]]:
    """The contract's payload Structs (api/events.py derives its OpenAPI views from them)."""
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_payload_structs(sub)} if sub.__module__ == ev.__name__ else set()
    return found


def _message() -> Message:
    return Message(
        id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        sequence=2,
        role="agent",
        content=[TextPart(text="Sorry")],
        controls=None,
        metadata={"error_code": "llm_error"},
        tags=[],
        created_at=datetime.now(UTC),
        tool_calls=None,
        tool_results=None,
    )


def test_every_payload_struct_is_in_one_union_and_every_type_is_one_struct() -> None:
    assert _payload_structs(ev.Payload) == {*ev.STORED, *ev.EPHEMERAL}
    assert not set(ev.STORED) & set(ev.EPHEMERAL)
    tags = [ev.type_of(p) for p in (*ev.STORED, *ev.EPHEMERAL)]
    # issue 12: tool.call_requested, output.message.completed (the reply as Everruns' clients read it)
    assert len(tags) == len(set(tags)) == 22
    assert {ev.type_of(p) for p in ev.EPHEMERAL} == {"output.message.delta", "output.message.reset"}


def test_data_is_the_payload_without_its_tag() -> None:
    failed = ev.TurnFailed(turn_id="t", error=None, error_code="llm_error")
    assert ev.type_of(failed) == ev.type_of(ev.TurnFailed) == "turn.failed"
    assert ev.to_data(failed) == {"turn_id": "t", "error": None, "error_code": "llm_error"}  # null kept
    assert ev.from_data("turn.failed", ev.to_data(failed)) == failed
    # message.agent: a reply has `usage`; a failure notice has none (absent, not null).
    message = _message()
    notice = ev.to_data(ev.MessageAgent.notice(message))
    assert notice == {"message": msgspec.to_builtins(message), "metadata": {"error": True}}
    usage = ev.TokenUsage(input_tokens=3, output_tokens=4)
    reply = ev.to_data(ev.MessageAgent(message=message, metadata=None, usage=usage))
    assert reply["usage"] == {"input_tokens": 3, "output_tokens": 4}
    assert ev.from_data("message.agent", notice) == ev.MessageAgent.notice(message)
    # output.message.completed carries the same data as the step's message.agent.
    said = ev.MessageAgent(message=message, metadata={"model": "m"}, usage=usage)
    completed = ev.OutputMessageCompleted.of(said)
    assert ev.type_of(completed) == "output.message.completed"
    assert ev.to_data(completed) == ev.to_data(said)
    assert ev.to_data(ev.OutputMessageCompleted.of(ev.MessageAgent.notice(message))) == notice


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        ("turn.failed", {"turn_id": "t", "error": None}),  # a field missing
        ("turn.cancelled", {"turn_id": "t", "iterations": 1}),  # a field it does not have
        ("turn.canceled", {"turn_id": "t"}),  # no such type
        ("output.message.delta", {"message_id": "m", "delta": "x"}),  # live-only, never stored
    ],
)
def test_data_that_is_not_its_types_payload_is_refused(type_: str, data: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        ev.from_data(type_, data)


def _spec() -> dict[str, Any]:
    # Building the app connects to nothing, so any addresses will do.
    offline = Endpoints(
        database_url="postgresql://x@127.0.0.1:1/x",
        redis_url="redis://127.0.0.1:1",
        temporal_address="127.0.0.1:1",
    )
    return app_for(make_settings(offline), configure_logs=False).openapi_schema.to_schema()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def test_openapi_documents_every_payload() -> None:
    spec = _spec()
    schemas = spec["components"]["schemas"]
    for payload in (*ev.STORED, *ev.EPHEMERAL):
        envelope = schemas[f"{payload.__name__}{'Event' if payload in ev.STORED else 'Frame'}"]
        assert envelope["properties"]["type"] == {"type": "string", "const": ev.type_of(payload)}
        assert envelope["properties"]["data"] == _ref(payload.__name__)
        # `data` as stored and sent: the Struct's fields, no tag; those without a default required.
        data = schemas[payload.__name__]
        fields = msgspec.structs.fields(payload)
        assert set(data["properties"]) == {f.encode_name for f in fields}
        assert set(data["required"]) == {f.encode_name for f in fields if f.required}
    assert set(schemas["TurnStartedEvent"]["properties"]) == set(ev.Event.__struct_fields__)
    # A live frame has the stored envelope's fields too (Everruns' SDK parses every frame alike).
    assert set(schemas["OutputMessageDeltaFrame"]["properties"]) == set(ev.LiveEvent.__struct_fields__)
    assert set(ev.LiveEvent.__struct_fields__) == set(ev.Event.__struct_fields__)
    assert schemas["OutputMessageDeltaFrame"]["properties"]["sequence"] == {"type": "null"}

    ok = spec["paths"][EVENTS_PATH]["get"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == _ref("EventPage")
    listed = [_ref(f"{p.__name__}Event") for p in ev.STORED]
    assert schemas["EventPage"]["properties"]["data"]["items"] == {"oneOf": listed}
    frame = ok["text/event-stream"]["schema"]
    assert frame["required"] == ["event", "data"]
    assert frame["properties"]["data"]["contentMediaType"] == "application/json"
    live = [_ref(f"{p.__name__}Frame") for p in ev.EPHEMERAL]
    assert frame["properties"]["data"]["contentSchema"] == {"oneOf": [*listed, *live, _ref("Connected")]}
    assert set(spec["paths"][EVENTS_PATH]["get"]["responses"]) == {"200", "400", "404", "429", "500"}
    # The flat list, and both streams (issue 12): the same frames; the streams answer nothing else.
    assert spec["paths"][FLAT_EVENTS_PATH]["get"]["responses"]["200"] == ok_response(spec, EVENTS_PATH)
    for path in STREAM_PATHS:
        operation = spec["paths"][path]["get"]
        assert operation["responses"]["200"]["content"] == {"text/event-stream": {"schema": frame}}
        assert set(operation["responses"]) == {"200", "400", "404", "429", "500"}
        parameters = {p["name"] for p in operation["parameters"]}
        assert {"since_id", "after_sequence", "types", "exclude", "Last-Event-ID"} <= parameters
        assert not {"offset", "limit", "before_sequence"} & parameters


def ok_response(spec: dict[str, Any], path: str) -> Any:
    return spec["paths"][path]["get"]["responses"]["200"]
