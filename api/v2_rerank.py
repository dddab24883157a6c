"""Opper's `POST /v2/rerank` and `GET /v2/rerank/models`, as the `opperai` SDK's `rerank` calls them
(`documents`, `list_models`): ranking by embeddings similarity (services/v2_rerank.py)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import Body
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, v2_error_responses
from api.pagination import PageParams
from api.state import Services
from core.identity import Identity
from core.schemas import v2_rerank as schema
from core.schemas.v2_traces import V2Page
from services import v2_rerank
from services.model_calls import ModelAccess


class V2RerankController(Controller):
    path = "/v2/rerank"
    tags = ["v2-rerank"]
    security = AUTHENTICATED

    @post(operation_id="v2Rerank", status_code=200, responses=v2_error_responses(400, 401, 502))
    async def rerank(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.Rerank, Body()],
    ) -> schema.Reranked:
        """`documents` ordered by relevance to `query` (the best first; `index` is the document's
        place in the request), at most `top_k` of them. `model` names one of your embedding models
        (`GET /v2/rerank/models`): the score is the cosine of the query's and the document's vectors."""
        return await v2_rerank.rerank(db_session, ModelAccess(services.settings, services.secrets), who, data)

    @get("/models", operation_id="v2ListRerankModels", responses=v2_error_responses(401, 422))
    async def list_models(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> V2Page[schema.RerankModel]:
        """The models `POST /v2/rerank` takes: your embedding models."""
        return await v2_rerank.list_models(db_session, who, page_params.offset, page_params.limit)
