"""Opper's `POST /v2/embeddings` (seed 000, "Embeddings"), through litellm's embedding call on the
named or the default embedding model; the answer is OpenAI's list shape, which Opper's SDK reads as
`{model, data, usage}`."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import Body
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, v2_error_responses
from api.state import Services
from core.identity import Identity
from core.schemas import v2_knowledge as schema
from services import embeddings
from services.model_calls import ModelAccess


class V2EmbeddingsController(Controller):
    path = "/v2/embeddings"
    tags = ["v2-embeddings"]
    security = AUTHENTICATED

    @post(operation_id="v2CreateEmbeddings", status_code=200, responses=v2_error_responses(401, 502))
    async def create_embeddings(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.CreateEmbedding, Body()],
    ) -> schema.EmbeddingList:
        """The embedding of `input` (one text, or a list: one vector each, in order). `model` names
        one of your embedding models (`GET /v2/models`, kind `embedding`); without it, the default
        embedding model. A provider's failure is a 502."""
        return await embeddings.create(
            db_session, ModelAccess(services.settings, services.secrets), who.user_id, data
        )
