"""Which embedding model a caller's `/v2/embeddings` call or knowledge base uses.

The rule (docs/v2.md "Models"): a model named in the request wins (any name `model_names` takes, of
kind "embedding"). Without one: the caller's own newest active embedding model (on one of its own
providers: a custom model of kind "embedding" counts), else the deployment's oldest active one (a
shared provider's, the first an admin added: the same for every user, and stable when more are
added). Disabled models and models of disabled providers are never chosen by default."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import LlmModel, LlmProvider
from core.errors import InvalidInput
from services import model_names

KIND = "embedding"


async def default_embedding_model(db: AsyncSession, owner_id: uuid.UUID) -> LlmModel | None:
    """The caller's default embedding model (the rule above), or None when it may use none."""
    usable = (
        select(LlmModel)
        .join(LlmProvider, LlmProvider.id == LlmModel.provider_id)
        .where(LlmModel.kind == KIND, LlmModel.status == "active", LlmProvider.status == "active")
    )
    own = usable.where(LlmProvider.owner_id == owner_id).order_by(LlmModel.created_at.desc(), LlmModel.id)
    shared = usable.where(LlmProvider.owner_id.is_(None)).order_by(LlmModel.created_at, LlmModel.id)
    for query in (own, shared):
        found: LlmModel | None = (await db.execute(query.limit(1))).scalars().first()
        if found is not None:
            return found
    return None


async def embedding_model(
    db: AsyncSession, owner_id: uuid.UUID, name: str | None, *, field: str = "model"
) -> LlmModel:
    """The model named `name` (of kind "embedding"), or the caller's default; a 400 when there is
    none, saying how to add one."""
    if name:
        return await model_names.resolve(db, owner_id, name, field=field, kind=KIND)
    found = await default_embedding_model(db, owner_id)
    if found is None:
        raise InvalidInput(
            f'{field}: no embedding model: add one (a model of kind "embedding": POST '
            "/v1/llm-providers/{id}/models with kind, or POST /v2/models/custom with kind) or name one",
            field=field,
        )
    return found
