"""Opper's `/v2/models` (the models a caller may use) and `/v2/models/custom` (its own named models),
as the `opperai` SDK's `language_models` calls them: a registration answers 200 (the SDK takes no
201), a delete 204, errors `{"detail": "..."}` (api/errors.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, v2_error_responses
from api.pagination import PageParams
from api.state import Services
from core.identity import Identity
from core.net import NetPolicy
from core.schemas import v2_models as schema
from core.schemas.v2_traces import V2Page
from services import v2_models

CustomModelId = FromPath[uuid.UUID]


def _policy(services: Services) -> NetPolicy:
    """The outbound rule this process's model calls follow: a model's own endpoint is checked by it."""
    return NetPolicy(allow_loopback=services.settings.outbound_allow_loopback)


class V2ModelController(Controller):
    path = "/v2/models"
    tags = ["v2-models"]
    security = AUTHENTICATED

    @get(operation_id="v2ListModels", responses=v2_error_responses(401, 422))
    async def list_models(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        kind: Annotated[
            Literal["chat", "embedding"] | None,
            QueryParameter(description="Only models of this kind."),
        ] = None,
    ) -> V2Page[schema.LanguageModel]:
        """Every model the caller may use (its own providers' first, then the deployment's), with
        its provider, kind, litellm name and litellm's prices per token where its table knows the
        model. `name` is what `model` fields take (a custom model's name, else `provider/model`)."""
        return await v2_models.list_models(db_session, who, page_params.offset, page_params.limit, kind)

    @post(
        "/custom",
        status_code=200,
        operation_id="v2RegisterCustomModel",
        responses=v2_error_responses(401, 409, 422, 503),
    )
    async def register_custom(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.RegisterCustomModel, Body()],
    ) -> schema.CustomModel:
        """Register a custom model: `name` (unique among the caller's; 409 otherwise) bound to a
        litellm `identifier` and options (`extra`). It is served by its own `api_key` (stored
        encrypted, never returned), or `extra.provider_id`, or the caller's newest provider of the
        identifier's route (docs/v2.md, "Models")."""
        return await v2_models.register_custom(db_session, who, services.secrets, data, _policy(services))

    @get("/custom", operation_id="v2ListCustomModels", responses=v2_error_responses(401, 422))
    async def list_custom(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
    ) -> V2Page[schema.CustomModel]:
        """The caller's custom models, oldest first."""
        return await v2_models.list_custom(db_session, who, page_params.offset, page_params.limit)

    @get(
        "/custom/by-name/{custom_model_name:path}",
        operation_id="v2GetCustomModelByName",
        responses=v2_error_responses(401, 404),
    )
    async def get_custom_by_name(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        custom_model_name: FromPath[str],
    ) -> schema.CustomModel:
        """One of the caller's custom models, by its name (names may hold `/`: the rest of the path
        is the name)."""
        # A `path` parameter keeps its leading slash.
        return await v2_models.get_custom_by_name(db_session, who, custom_model_name.lstrip("/"))

    @get(
        "/custom/{custom_model_id:uuid}",
        operation_id="v2GetCustomModel",
        responses=v2_error_responses(401, 404),
    )
    async def get_custom(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        custom_model_id: CustomModelId,
    ) -> schema.CustomModel:
        """One of the caller's custom models (another's answers 404)."""
        return await v2_models.get_custom(db_session, who, custom_model_id)

    @patch(
        "/custom/{custom_model_id:uuid}",
        operation_id="v2UpdateCustomModel",
        responses=v2_error_responses(401, 404, 409, 422, 503),
    )
    async def update_custom(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        custom_model_id: CustomModelId,
        data: Annotated[schema.UpdateCustomModel, Body()],
    ) -> schema.CustomModel:
        """Change a custom model's name, identifier, options, kind or own key; fields left out stay."""
        return await v2_models.update_custom(
            db_session, who, services.secrets, custom_model_id, data, _policy(services)
        )

    @delete(
        "/custom/{custom_model_id:uuid}",
        operation_id="v2DeleteCustomModel",
        responses=v2_error_responses(401, 404, 409),
    )
    async def delete_custom(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        custom_model_id: CustomModelId,
    ) -> None:
        """Delete a custom model (and its own provider, when it has its own key); 409 while an agent
        or session uses it."""
        await v2_models.delete_custom(db_session, who, custom_model_id)
