"""Opper's `POST /v2/call` and `POST /v2/call/stream` (seed 000, "Task Completion"; the `opperai`
SDK's `opper.call(...)` and `opper.stream(...)`). How the answer is kept valid: services/v2_calls.py
and docs/v2.md#calls."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import Body
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, v2_error_responses
from api.state import Services
from core.identity import Identity
from core.schemas import v2_calls as schema
from services import model_calls, v2_calls


class V2CallController(Controller):
    path = "/v2/call"
    tags = ["v2-calls"]
    security = AUTHENTICATED

    @post(status_code=200, operation_id="v2Call", responses=v2_error_responses(401, 422, 502))
    async def call(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.CallRequest, Body()],
    ) -> schema.CallResponse:
        """Give a task to a model: `instructions`, an `input` (checked against `input_schema`: 422
        naming the path), an `output_schema` the answer (`json_payload`) always matches (repaired up
        to twice, else 502), or text (`message`) without one. `model` is a name or a list tried in
        order when one fails. The call is a span (`span_id`), under `parent_span_id` if given.
        `configuration.cache: true` (or the SDK's `invocation.cache.ttl`) answers an identical
        call from the cache (`cached: true`)."""
        access = model_calls.ModelAccess(services.settings, services.secrets)
        # A plain call's few-shot examples come from the caller's function of its name.
        call = await v2_calls.prepare(db_session, who, services.settings, data, few_shot=access)
        return await v2_calls.complete(db_session, services.redis, who, access, call)

    @post(
        "/stream",
        status_code=200,
        operation_id="v2CallStream",
        responses=v2_error_responses(401, 422, 502),
    )
    async def stream(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.CallRequest, Body()],
    ) -> Stream:
        """The same call, answered as server-sent events `data: {delta, json_path, span_id,
        chunk_type}` as the model writes: `text` deltas without an output schema; with one, `json`
        deltas of each field at its `json_path` (`person.name`, `items[0]`); an `error` chunk ends a
        stream whose model failed or whose answer broke the schema (a stream is not repaired). Bad
        input is an HTTP error before the stream starts."""
        access = model_calls.ModelAccess(services.settings, services.secrets)
        call = await v2_calls.prepare(db_session, who, services.settings, data, few_shot=access)
        return Stream(
            v2_calls.stream(services.db.session, services.redis, who, access, call),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Span-Id": call.span_id},
        )
