"""LLM providers and models: `/v1/llm-providers`, `/v1/llm-models` and the flat `/v1/models`."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import MAX_LIMIT, MAX_OFFSET, Page, PageParams, page
from api.state import Services
from core.db.models import LlmModel
from core.identity import Identity
from core.schemas.llm import CreateModel, CreateProvider, Model, Provider, UpdateModel, UpdateProvider
from services import llm

# The provider list and the two model lists Everruns' UI reads answer a bare JSON array, as
# Everruns' server does (its pages crash on the `{data: [...]}` envelope): docs/api.md#pagination.
# `offset`/`limit` still page them; without `limit` the array has every row, and X-Total-Count has
# what `total` said.
ArrayOffset = Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description="How many to skip.")]
ArrayLimit = Annotated[
    int | None,
    QueryParameter(ge=1, le=MAX_LIMIT, description=f"At most this many (up to {MAX_LIMIT}); all without it."),
]
TOTAL_HEADER = [
    # documentation_only: the handler sets it; `value` only gives the header its (string) schema.
    ResponseHeader(
        name="X-Total-Count",
        description="How many there are in all",
        documentation_only=True,
        value="0",
    )
]


def _array(rows: list[LlmModel], total: int) -> Response[list[Model]]:
    return Response([llm.model_to_schema(r) for r in rows], headers={"X-Total-Count": str(total)})


class ProviderController(Controller):
    path = "/v1/llm-providers"
    tags = ["llm-providers"]
    security = AUTHENTICATED

    @post(operation_id="createLlmProvider", responses=error_responses(400, 503))
    async def create_provider(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[CreateProvider, Body()],
    ) -> Provider:
        """Add a provider. `api_key` is write-only: it is stored encrypted and never returned
        (`api_key_set` tells whether one is stored). `base_url` replaces the default endpoint."""
        return llm.provider_to_schema(await llm.create_provider(db_session, who, services.secrets, data), who)

    @get(operation_id="listLlmProviders", responses=error_responses(400), response_headers=TOTAL_HEADER)
    async def list_providers(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        offset: ArrayOffset = 0,
        limit: ArrayLimit = None,
    ) -> Response[list[Provider]]:
        """The providers, as a bare array (Everruns' form, not the list envelope)."""
        rows, total = await llm.list_providers(db_session, who, offset, limit)
        return Response([llm.provider_to_schema(r, who) for r in rows], headers={"X-Total-Count": str(total)})

    @get("/{provider_id:uuid}", operation_id="getLlmProvider", responses=error_responses(404))
    async def get_provider(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        provider_id: FromPath[uuid.UUID],
    ) -> Provider:
        """One provider."""
        return llm.provider_to_schema(await llm.get_provider(db_session, who, provider_id), who)

    @patch("/{provider_id:uuid}", operation_id="updateLlmProvider", responses=error_responses(400, 404, 503))
    async def update_provider(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        provider_id: FromPath[uuid.UUID],
        data: Annotated[UpdateProvider, Body()],
    ) -> Provider:
        """Change a provider; `api_key: null` removes the stored key. A new `base_url` or
        `provider_type` that would send a stored key elsewhere needs `api_key` in the same request."""
        return llm.provider_to_schema(
            await llm.update_provider(db_session, who, services.secrets, provider_id, data), who
        )

    @delete("/{provider_id:uuid}", operation_id="deleteLlmProvider", responses=error_responses(404, 409))
    async def delete_provider(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        provider_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete a provider and its models; 409 naming the agents and sessions that use them."""
        await llm.delete_provider(db_session, who, provider_id)

    @post("/{provider_id:uuid}/models", operation_id="createLlmModel", responses=error_responses(400, 404))
    async def create_model(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        provider_id: FromPath[uuid.UUID],
        data: Annotated[CreateModel, Body()],
    ) -> Model:
        """Add a model to a provider. `is_default: true` moves the default flag to it."""
        return llm.model_to_schema(await llm.create_model(db_session, who, provider_id, data))

    @get(
        "/{provider_id:uuid}/models",
        operation_id="listLlmProviderModels",
        responses=error_responses(400, 404),
        response_headers=TOTAL_HEADER,
    )
    async def list_provider_models(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        provider_id: FromPath[uuid.UUID],
        offset: ArrayOffset = 0,
        limit: ArrayLimit = None,
    ) -> Response[list[Model]]:
        """The provider's models, as a bare array (Everruns' form, not the list envelope)."""
        return _array(*await llm.list_models(db_session, who, offset, limit, provider_id))


class ModelController(Controller):
    path = "/v1/llm-models"
    tags = ["llm-models"]
    security = AUTHENTICATED

    @get(operation_id="listLlmModels", responses=error_responses(400), response_headers=TOTAL_HEADER)
    async def list_models(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        offset: ArrayOffset = 0,
        limit: ArrayLimit = None,
    ) -> Response[list[Model]]:
        """Every model, each with its provider and profile, as a bare array (Everruns' form, not
        the list envelope)."""
        return _array(*await llm.list_models(db_session, who, offset, limit))

    @get("/{model_id:uuid}", operation_id="getLlmModel", responses=error_responses(404))
    async def get_model(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        model_id: FromPath[uuid.UUID],
    ) -> Model:
        """One model."""
        return llm.model_to_schema(await llm.get_model(db_session, who, model_id))

    @patch("/{model_id:uuid}", operation_id="updateLlmModel", responses=error_responses(400, 404))
    async def update_model(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        model_id: FromPath[uuid.UUID],
        data: Annotated[UpdateModel, Body()],
    ) -> Model:
        """Change a model; `is_default: true` moves the default flag to it."""
        return llm.model_to_schema(await llm.update_model(db_session, who, model_id, data))

    @delete("/{model_id:uuid}", operation_id="deleteLlmModel", responses=error_responses(404, 409))
    async def delete_model(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        model_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete a model; 409 naming the agents and sessions that use it."""
        await llm.delete_model(db_session, who, model_id)


class FlatModelController(Controller):
    """`/v1/models`, where everruns-sdk's `client.models` reads the same models (with the list
    envelope: the SDK reads `data`)."""

    path = "/v1/models"
    tags = ["llm-models"]
    security = AUTHENTICATED

    @get(operation_id="listModels", responses=error_responses(400))
    async def list_models(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> Page[Model]:
        """Every model the caller may use, each with its provider and profile."""
        rows, total = await llm.list_models(db_session, who, page_params.offset, page_params.limit)
        return page([llm.model_to_schema(r) for r in rows], total, page_params)

    @get("/{model_id:uuid}", operation_id="getModel", responses=error_responses(404))
    async def get_model(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        model_id: FromPath[uuid.UUID],
    ) -> Model:
        """One model (the same as `GET /v1/llm-models/{id}`)."""
        return llm.model_to_schema(await llm.get_model(db_session, who, model_id))
