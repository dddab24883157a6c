"""Embeddings through litellm's embedding call, for `POST /v2/embeddings`, knowledge bases and the
`knowledge_search` capability: a model is reached as every model call is (services/model_calls.py:
the address and key checks, the pinned client for a user's provider), its failure is a
`ModelCallFailed` (a 502)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import litellm
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import LlmModel
from core.errors import BadGateway
from core.schemas import v2_knowledge as schema
from services import embedding_models, model_calls, model_names

# Texts per provider call: OpenAI takes at most 2048 inputs per request; fewer keeps one request's
# body and time small when a large file is embedded.
BATCH = 256
EMBED_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    input_tokens: int


async def model_named(db: AsyncSession, owner_id: uuid.UUID, name: str | None) -> LlmModel:
    """The embedding model `name` names (services/model_names.py; only models of kind `embedding`),
    or the caller's default embedding model when no name is given (services/embedding_models.py)."""
    return await embedding_models.embedding_model(db, owner_id, name)


async def embed(access: model_calls.ModelAccess, model: LlmModel, texts: list[str]) -> Embedded:
    """The texts' vectors, in order (several provider calls for many texts)."""
    vectors: list[list[float]] = []
    tokens = 0
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        async with access.reaching(model.provider, model) as (params, api_key):
            params.pop("extra_body", None)  # the simulator's chat settings: an embeddings call has none
            try:
                response = await litellm.aembedding(
                    **params, input=batch, timeout=EMBED_TIMEOUT_S, num_retries=0
                )
            except Exception as exc:
                if model_calls.is_provider_error(exc):
                    raise model_calls.failure(exc, api_key) from None
                raise
        got = [item["embedding"] if isinstance(item, dict) else item.embedding for item in response.data]
        if len(got) != len(batch):
            raise model_calls.fatal(
                "llm_error", None, "the embeddings answer has the wrong number of vectors"
            )
        vectors.extend([float(x) for x in v] for v in got)
        usage = getattr(response, "usage", None)
        tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
    return Embedded(vectors, tokens)


def model_name(model: LlmModel) -> str:
    """How answers name a model: its litellm route (`openai/text-embedding-3-small`)."""
    return model_names.route_name(model.provider.provider_type, model.model_id)


def _names(model: schema.CreateEmbedding) -> list[str]:
    """The request's model names in the order to try (the SDK's `TModel` forms)."""
    given = model.model
    items = given if isinstance(given, list) else [given] if given is not None else []
    return [item if isinstance(item, str) else item.name for item in items]


async def create(
    db: AsyncSession, access: model_calls.ModelAccess, owner_id: uuid.UUID, data: schema.CreateEmbedding
) -> schema.EmbeddingList:
    """`POST /v2/embeddings`. Every model named is resolved first (an unknown or disabled one is a
    400 before any call); then the first that answers wins, a provider's failure moving on to the
    next (as `/v2/call`), all failing a 502. No span is recorded for it (a knowledge query's
    embedding neither)."""
    names = _names(data)
    if names:
        fields = ["model"] if len(names) == 1 else [f"model[{i}]" for i in range(len(names))]
        models = [
            await embedding_models.embedding_model(db, owner_id, name, field=field)
            for name, field in zip(names, fields, strict=True)
        ]
    else:
        models = [await model_named(db, owner_id, None)]
    texts = [data.input] if isinstance(data.input, str) else list(data.input)
    failures: list[str] = []
    for i, model in enumerate(models):
        try:
            done = await embed(access, model, texts)
        except model_calls.ModelCallFailed as exc:
            if len(models) == 1:
                raise
            failures.append(f"{names[i]}: {exc.message}")
            continue
        return schema.EmbeddingList(
            object="list",
            model=names[i] if names else model_name(model),
            data=[
                schema.EmbeddingItem(object="embedding", index=n, embedding=v)
                for n, v in enumerate(done.vectors)
            ],
            usage=schema.EmbeddingUsage(prompt_tokens=done.input_tokens, total_tokens=done.input_tokens),
        )
    raise BadGateway("every model failed: " + "; ".join(failures))
