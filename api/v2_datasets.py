"""Opper's datasets under `/v2` (seed 000, "Datasets"; the `opperai` SDK's paths): a managed
function's examples. Both the SDK's `POST /v2/datasets/{id}` and the seed's `POST .../entries` add
an entry; both the SDK's `POST .../entries/query` and the seed's `POST .../query` search."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, v2_error_responses
from api.pagination import PageParams
from api.state import Services
from core.identity import Identity
from core.schemas import v2_functions as schema
from core.schemas.v2_traces import V2Page
from services import datasets, model_calls

DatasetId = FromPath[uuid.UUID]
EntryId = FromPath[uuid.UUID]
QueryText = Annotated[
    # `query` is a name Litestar keeps for itself: the parameter is read under it by alias.
    str | None,
    QueryParameter(name="query", min_length=1, max_length=100_000, description="The text to search for."),
]
Limit = Annotated[int | None, QueryParameter(ge=1, le=100, description="How many entries (5 by default).")]


class V2DatasetController(Controller):
    path = "/v2/datasets/{dataset_id:uuid}"
    tags = ["v2-datasets"]
    security = AUTHENTICATED

    # The SDK's `create_entry` posts to the dataset itself and reads a 200.
    @post(
        status_code=200, operation_id="v2CreateDatasetEntrySdk", responses=v2_error_responses(401, 404, 422)
    )
    async def create_entry_sdk(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        dataset_id: DatasetId,
        data: Annotated[schema.CreateEntry, Body()],
    ) -> schema.Entry:
        """Add an entry (the SDK's path; the seed's is `POST .../entries`)."""
        return await datasets.create(db_session, who, dataset_id, data)

    @post("/entries", operation_id="v2CreateDatasetEntry", responses=v2_error_responses(401, 404, 422))
    async def create_entry(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        dataset_id: DatasetId,
        data: Annotated[schema.CreateEntry, Body()],
    ) -> schema.Entry:
        """Add an entry `{input, output, expected, comment}` (values of any JSON type; they answer
        as strings, JSON for a non-string)."""
        return await datasets.create(db_session, who, dataset_id, data)

    @get("/entries", operation_id="v2ListDatasetEntries", responses=v2_error_responses(401, 404))
    async def list_entries(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        dataset_id: DatasetId,
    ) -> V2Page[schema.Entry]:
        """A dataset's entries, oldest first."""
        return await datasets.list_entries(db_session, who, dataset_id, page_params.offset, page_params.limit)

    @get("/entries/{entry_id:uuid}", operation_id="v2GetDatasetEntry", responses=v2_error_responses(401, 404))
    async def get_entry(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        dataset_id: DatasetId,
        entry_id: EntryId,
    ) -> schema.Entry:
        """One entry."""
        return await datasets.get(db_session, who, dataset_id, entry_id)

    @patch(
        "/entries/{entry_id:uuid}",
        operation_id="v2UpdateDatasetEntry",
        responses=v2_error_responses(401, 404, 422),
    )
    async def update_entry(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        dataset_id: DatasetId,
        entry_id: EntryId,
        data: Annotated[schema.UpdateEntry, Body()],
    ) -> schema.Entry:
        """Change an entry: fields left out stay."""
        return await datasets.update(db_session, who, dataset_id, entry_id, data)

    @delete(
        "/entries/{entry_id:uuid}",
        operation_id="v2DeleteDatasetEntry",
        responses=v2_error_responses(401, 404),
    )
    async def delete_entry(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        dataset_id: DatasetId,
        entry_id: EntryId,
    ) -> None:
        """Delete an entry."""
        await datasets.delete(db_session, who, dataset_id, entry_id)

    @post(
        "/entries/query",
        status_code=200,
        operation_id="v2QueryDatasetEntries",
        responses=v2_error_responses(401, 404, 502),
    )
    async def query_entries(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        dataset_id: DatasetId,
        text: QueryText = None,
        limit: Limit = None,
    ) -> list[schema.ScoredEntry]:
        """Semantic search (the SDK's form: `?query=...&limit=5`): the entries whose input is most
        similar to the query, best first, each with its cosine `score`. Entries are embedded by the
        caller's default embedding model when first searched."""
        access = model_calls.ModelAccess(services.settings, services.secrets)
        return await datasets.query(db_session, who, access, dataset_id, text, limit)

    @post(
        "/query", status_code=200, operation_id="v2QueryDataset", responses=v2_error_responses(401, 404, 502)
    )
    async def query_dataset(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        dataset_id: DatasetId,
        data: Annotated[schema.QueryBody, Body()],
    ) -> list[schema.ScoredEntry]:
        """Semantic search (the seed's form: a body `{query, limit}`, or `top_k`)."""
        access = model_calls.ModelAccess(services.settings, services.secrets)
        return await datasets.query(db_session, who, access, dataset_id, data.query, data.limit or data.top_k)
