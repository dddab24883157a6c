"""`POST /v2/rerank` and `GET /v2/rerank/models` (docs/v2.md, "Rerank and OCR").

Documents are ranked by embeddings similarity: the query and every document are embedded in one
call of the chosen embedding model (services/embeddings.py) and each document scores the cosine of
its vector with the query's. litellm's own `arerank` serves only rerank providers (Cohere, Jina,
Voyage, Infinity, ...), none of which is a provider type here (openai, anthropic, azure_openai,
openai_compatible, the simulator), so no model reached here has one.

Each call is a span (`type` `rerank`), a trace of its own in the caller's default project
(services/traces.write_call): the query and the documents' texts in, the ranking out, with the
model, tokens and cost; a provider's failure is a span with its error. The answer's `id` is the
span's id (the SDK's response has no `span_id`), so `GET /v2/spans/{id}` finds it."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.identity import Identity
from core.schemas import v2_rerank as schema
from core.schemas.traces import SpanWrite
from core.schemas.v2_traces import ListMeta, V2Page
from services import embeddings, model_calls, traces, v2_models

SPAN_NAME = "rerank"


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=False)) / norms if norms else 0.0


async def rerank(
    db: AsyncSession, access: model_calls.ModelAccess, who: Identity, data: schema.Rerank
) -> schema.Reranked:
    if not data.documents:
        raise InvalidInput("documents: give at least one document to rank", field="documents")
    if data.top_k is not None and data.top_k < 1:
        raise InvalidInput("top_k: must be at least 1", field="top_k")
    model = await embeddings.model_named(db, who.user_id, data.model or None)
    route = embeddings.model_name(model)
    span = SpanWrite(
        span_id=str(uuid.uuid4()),
        name=SPAN_NAME,
        kind="rerank",
        input={"query": data.query, "documents": [d.text for d in data.documents], "top_k": data.top_k},
        metadata={"route": "/v2/rerank", "model_pk": str(model.id)},
        start_time=datetime.now(UTC),
        model=route,
        provider=model.provider.provider_type,
    )
    try:
        done = await embeddings.embed(access, model, [data.query, *(d.text for d in data.documents)])
    except model_calls.ModelCallFailed as failed:
        await traces.finish_call(db, who.user_id, span, status="error", error=failed.message)
        raise
    query, vectors = done.vectors[0], done.vectors[1:]
    # Opper's scores lie between 0 and 1: a cosine below 0 (opposite meaning) counts as unrelated.
    scored = sorted(
        ((max(0.0, min(1.0, _cosine(query, v))), i) for i, v in enumerate(vectors)),
        key=lambda pair: (-pair[0], pair[1]),
    )[: data.top_k]
    spent = model_calls.cost_of(route, done.input_tokens, 0)
    await traces.finish_call(
        db,
        who.user_id,
        span,
        status="ok",
        output=[{"index": i, "relevance_score": score} for score, i in scored],
        input_tokens=done.input_tokens,
        output_tokens=0,
        cost=spent,
    )
    return schema.Reranked(
        id=span.span_id,
        results=[
            schema.RerankResult(
                index=i,
                relevance_score=score,
                document=data.documents[i] if data.return_documents else None,
            )
            for score, i in scored
        ],
        model=data.model or route,
        usage={"input_tokens": done.input_tokens, "documents": len(data.documents)},
        cost=schema.Cost(generation=float(spent), platform=0.0, total=float(spent)),
    )


async def list_models(db: AsyncSession, who: Identity, offset: int, limit: int) -> schema.RerankModels:
    """The embedding models the caller may use: each ranks by similarity."""
    page = await v2_models.list_models(db, who, offset, limit, "embedding")
    return V2Page(
        data=[
            schema.RerankModel(hosting_provider=m.hosting_provider, name=m.name, location=m.location)
            for m in page.data
        ],
        meta=ListMeta(total_count=page.meta.total_count),
    )
