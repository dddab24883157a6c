"""Which model a caller means by a name: the replay and golden-test APIs' `model` fields and every
`/v2` route's `model`. A name is one of the caller's models (those of its own providers and the
deployment's) by its id, its `model_id`, its litellm spelling (`openai/gpt-4o-mini`: the route the
worker calls it by, services/llm.completion_params) or its `/v2` custom-model alias."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import LlmModel, LlmProvider
from core.errors import InvalidInput

# The litellm route prefix of each provider type (services/llm.completion_params): every other type
# speaks OpenAI's wire format.
ROUTE_PREFIX = {"anthropic": "anthropic", "azure_openai": "azure"}


def visible(owner_id: uuid.UUID) -> ColumnElement[bool]:
    """The providers `owner_id` may use: its own and the deployment's (an admin's, owner NULL)."""
    return or_(LlmProvider.owner_id.is_(None), LlmProvider.owner_id == owner_id)


def route_name(provider_type: str, model_id: str) -> str:
    """The model as litellm spells it: `<route>/<model_id>`."""
    return f"{ROUTE_PREFIX.get(provider_type, 'openai')}/{model_id}"


def _ranked(query: Select[Any], spelling: ColumnElement[int]) -> Select[Any]:
    # Several of one name: by `spelling` (how the name matched), then the owner's own provider's
    # first, then an active one, then the oldest.
    return query.order_by(
        spelling,
        LlmProvider.owner_id.is_(None),
        LlmModel.status != "active",
        LlmModel.created_at,
        LlmModel.id,
    ).limit(1)


async def find_model(
    db: AsyncSession, owner_id: uuid.UUID, name: str, *, kind: str | None = None
) -> LlmModel | None:
    """One of the models `owner_id` may use, by any of its names (above); None if there is none.
    `kind` ("chat" or "embedding") narrows the search to models of that kind."""
    query = (
        select(LlmModel).join(LlmProvider, LlmProvider.id == LlmModel.provider_id).where(visible(owner_id))
    )
    if kind is not None:
        query = query.where(LlmModel.kind == kind)
    try:
        model_pk = uuid.UUID(name)
    except ValueError:
        model_pk = None
    if model_pk is not None:
        return await _first(db, query.where(LlmModel.id == model_pk))
    # One query for the three spellings, on the answer's path of every /v2 call: an alias wins over
    # a `model_id`, which wins over the `provider/model` route; then `_ranked`'s order.
    matches = [LlmModel.alias == name, LlmModel.model_id == name]
    route, _, model_id = name.partition("/")
    types = [t for t, prefix in ROUTE_PREFIX.items() if prefix == route]
    if model_id and (route == "openai" or types):
        # `openai/...` is the route of every type that speaks OpenAI's wire format.
        of_route = (
            LlmProvider.provider_type.in_(types) if types else LlmProvider.provider_type.not_in(ROUTE_PREFIX)
        )
        matches.append(and_(LlmModel.model_id == model_id, of_route))
    spelling = case(*((match, rank) for rank, match in enumerate(matches)), else_=len(matches))
    return await _first(db, _ranked(query.where(or_(*matches)), spelling))


async def _first(db: AsyncSession, query: Select[Any]) -> LlmModel | None:
    found: LlmModel | None = (await db.execute(query)).scalars().first()
    return found


async def resolve(
    db: AsyncSession, owner_id: uuid.UUID, name: str, *, field: str = "model", kind: str | None = None
) -> LlmModel:
    """`find_model`, or a 400 that names the field and says where the valid names are; a disabled
    model (or one of a disabled provider) is a 400 saying so."""
    found = await find_model(db, owner_id, name, kind=kind)
    if found is None:
        what = f"{kind} model" if kind else "model"
        raise InvalidInput(
            f"{field}: no {what} you may use is named {name!r}; GET /v2/models lists them (a model's "
            "id, its model_id, its provider/model litellm name, or a custom model's name)",
            field=field,
        )
    # An admin disables a model or its provider (a leaked key, a cost) to stop its calls: every /v2
    # path names its model here, so none calls a disabled one.
    if found.status != "active" or found.provider.status != "active":
        what = "model" if found.status != "active" else "model's provider"
        raise InvalidInput(f"{field}: {name!r} is disabled (the {what} is not active)", field=field)
    return found
