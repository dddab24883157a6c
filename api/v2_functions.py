"""Opper's managed functions under `/v2` (seed 000, "Functions"; the `opperai` SDK's paths): stored
call definitions with revisions and a dataset each. Errors are `{"detail": ...}`, lists
`{data, meta: {total_count}}`, deletes 204 (soft)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, v2_error_responses
from api.pagination import PageParams
from api.state import Services
from core.identity import Identity
from core.schemas import v2_calls
from core.schemas import v2_functions as schema
from core.schemas.v2_traces import V2Page
from services import functions, model_calls
from services import v2_calls as v2_calls_service

FunctionId = FromPath[uuid.UUID]
RevisionId = FromPath[uuid.UUID]


async def _prepared(
    db: AsyncSession,
    who: Identity,
    services: Services,
    function_id: uuid.UUID,
    revision_id: uuid.UUID | None,
    data: schema.CallFunction,
) -> tuple[model_calls.ModelAccess, v2_calls_service.Prepared]:
    access = model_calls.ModelAccess(services.settings, services.secrets)
    request, rev = await functions.call_request(db, who, access, function_id, revision_id, data)
    call = await v2_calls_service.prepare(db, who, services.settings, request)
    # The call's span names the function: what `save_examples` reads to find its dataset.
    call.meta.update(functions.span_meta(rev))
    return access, call


async def _call(
    db: AsyncSession,
    who: Identity,
    services: Services,
    function_id: uuid.UUID,
    revision_id: uuid.UUID | None,
    data: schema.CallFunction,
) -> v2_calls.CallResponse:
    access, call = await _prepared(db, who, services, function_id, revision_id, data)
    return await v2_calls_service.complete(db, services.redis, who, access, call)


async def _stream(
    db: AsyncSession,
    who: Identity,
    services: Services,
    function_id: uuid.UUID,
    revision_id: uuid.UUID | None,
    data: schema.CallFunction,
) -> Stream:
    access, call = await _prepared(db, who, services, function_id, revision_id, data)
    return Stream(
        v2_calls_service.stream(services.db.session, services.redis, who, access, call),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Span-Id": call.span_id},
    )


class V2FunctionController(Controller):
    path = "/v2/functions"
    tags = ["v2-functions"]
    security = AUTHENTICATED

    @post(operation_id="v2CreateFunction", responses=v2_error_responses(401, 409, 422))
    async def create_function(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        data: Annotated[schema.CreateFunction, Body()],
    ) -> schema.FunctionOut:
        """Store a function: `name` (letters, digits, `/ . - _`; unique among the caller's
        functions), `instructions`, optional schemas, `model` and `configuration`
        (`{"invocation.few_shot.count": N}` or the seed's `{"few_shot_count": N}`: N examples from
        its dataset in each call's prompt). Its first revision and its dataset come with it."""
        return await functions.create(db_session, who, data)

    @get(operation_id="v2ListFunctions", responses=v2_error_responses(401))
    async def list_functions(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        name: Annotated[
            str | None, QueryParameter(max_length=300, description="Part of the function's name (any case).")
        ] = None,
    ) -> V2Page[schema.FunctionSummary]:
        """The caller's functions, newest first."""
        return await functions.list_functions(db_session, who, name, page_params.offset, page_params.limit)

    @get(
        "/by-name/{function_name:path}",
        operation_id="v2GetFunctionByName",
        responses=v2_error_responses(401, 404),
    )
    async def get_by_name(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        function_name: FromPath[str],
    ) -> schema.FunctionOut:
        """A function by its name (names may hold `/`: the rest of the path is the name)."""
        # A `path` parameter keeps its leading slash.
        return await functions.by_name(db_session, who, function_name.lstrip("/"))

    @get("/{function_id:uuid}", operation_id="v2GetFunction", responses=v2_error_responses(401, 404))
    async def get_function(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        function_id: FunctionId,
    ) -> schema.FunctionOut:
        """A function with its current definition, `revision_id` and `dataset_id`."""
        return await functions.get(db_session, who, function_id)

    @patch(
        "/{function_id:uuid}",
        operation_id="v2UpdateFunction",
        responses=v2_error_responses(401, 404, 409, 422),
    )
    async def update_function(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        function_id: FunctionId,
        data: Annotated[schema.UpdateFunction, Body()],
    ) -> schema.FunctionOut:
        """Change a function: fields left out stay. A change makes a new revision (the answer's
        `revision_id`); earlier revisions stay callable by id."""
        return await functions.update(db_session, who, function_id, data)

    @delete("/{function_id:uuid}", operation_id="v2DeleteFunction", responses=v2_error_responses(401, 404))
    async def delete_function(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        function_id: FunctionId,
    ) -> None:
        """Delete a function (soft: it answers 404 from now on and its name is free again)."""
        await functions.delete(db_session, who, function_id)

    @get(
        "/{function_id:uuid}/revisions",
        operation_id="v2ListFunctionRevisions",
        responses=v2_error_responses(401, 404),
    )
    async def list_revisions(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        function_id: FunctionId,
    ) -> V2Page[schema.Revision]:
        """A function's revisions, newest first."""
        return await functions.list_revisions(
            db_session, who, function_id, page_params.offset, page_params.limit
        )

    @get(
        "/{function_id:uuid}/revisions/{revision_id:uuid}",
        operation_id="v2GetFunctionRevision",
        responses=v2_error_responses(401, 404),
    )
    async def get_revision(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        function_id: FunctionId,
        revision_id: RevisionId,
    ) -> schema.Revision:
        """One revision: the function's whole definition as that change left it."""
        return await functions.get_revision(db_session, who, function_id, revision_id)

    @post(
        "/{function_id:uuid}/call",
        status_code=200,
        operation_id="v2CallFunction",
        responses=v2_error_responses(401, 404, 422, 502),
    )
    async def call_function(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        function_id: FunctionId,
        data: Annotated[schema.CallFunction, Body()],
    ) -> v2_calls.CallResponse:
        """Call the function's current revision with an `input` (and optional `examples`,
        `parent_span_id`, `tags`): a `/v2/call` of its definition (docs/v2.md#calls), with
        `few_shot_count` examples from its dataset. The call's span records the function."""
        return await _call(db_session, who, services, function_id, None, data)

    @post(
        "/{function_id:uuid}/call/stream",
        status_code=200,
        operation_id="v2StreamFunction",
        responses=v2_error_responses(401, 404, 422, 502),
    )
    async def stream_function(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        function_id: FunctionId,
        data: Annotated[schema.CallFunction, Body()],
    ) -> Stream:
        """The same call as server-sent events, as `/v2/call/stream` answers."""
        return await _stream(db_session, who, services, function_id, None, data)

    @post(
        "/{function_id:uuid}/call/{revision_id:uuid}",
        status_code=200,
        operation_id="v2CallFunctionRevision",
        responses=v2_error_responses(401, 404, 422, 502),
    )
    async def call_revision(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        function_id: FunctionId,
        revision_id: RevisionId,
        data: Annotated[schema.CallFunction, Body()],
    ) -> v2_calls.CallResponse:
        """Call one revision of the function (its definition as that change left it)."""
        return await _call(db_session, who, services, function_id, revision_id, data)

    @post(
        "/{function_id:uuid}/call/stream/{revision_id:uuid}",
        status_code=200,
        operation_id="v2StreamFunctionRevision",
        responses=v2_error_responses(401, 404, 422, 502),
    )
    async def stream_revision(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        function_id: FunctionId,
        revision_id: RevisionId,
        data: Annotated[schema.CallFunction, Body()],
    ) -> Stream:
        """One revision's call as server-sent events."""
        return await _stream(db_session, who, services, function_id, revision_id, data)
