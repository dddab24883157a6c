"""Opper's `/v2/call` and `/v2/call/stream` (seed 000, "Task Completion"), as the `opperai` SDK 1.7
sends and reads them: the SDK's `configuration` keys are dotted (`invocation.cache.ttl`), the seed's
plain (`few_shot_count`); both are accepted."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


class ModelChoice(msgspec.Struct, kw_only=True):
    """The SDK's model object: a name, with litellm options (`temperature`, ...) for that model."""

    name: Name
    options: dict[str, Any] | None = None
    extra_headers: dict[str, Any] | None = None


ModelSpec = str | ModelChoice
ModelField = ModelSpec | list[ModelSpec]


class Example(msgspec.Struct, kw_only=True):
    input: Any
    output: Any
    comment: str | None = None


class CallRequest(msgspec.Struct, kw_only=True):
    name: Name
    instructions: str | None = None
    input: Any = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    # One name or several: the next is tried when one fails with a provider error.
    model: (
        Annotated[ModelField, msgspec.Meta(description="A model name, or a list tried in order")] | None
    ) = None
    examples: list[Example] | None = None
    parent_span_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    tags: dict[str, Any] | None = None
    configuration: dict[str, Any] | None = None


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class Cost(msgspec.Struct, kw_only=True):
    """USD: `total` = `generation` (the providers' prices) + `platform` (0 here)."""

    generation: float
    platform: float
    total: float


class CallResponse(msgspec.Struct, kw_only=True):
    span_id: str
    message: str | None = None
    json_payload: Any = None
    cached: bool = False
    usage: Usage | None = None
    cost: Cost | None = None


class StreamChunk(msgspec.Struct, kw_only=True):
    """One server-sent event's `data`: a `delta` of text (`chunk_type: text`), of a field of the JSON
    answer at `json_path` (`json`), or an error (`error`, with `error_type` and `error_message`)."""

    span_id: str
    chunk_type: Literal["text", "json", "error"]
    delta: str | int | float | bool | None = None
    json_path: str | None = None
    error_type: str | None = None
    error_message: str | None = None
