"""LLM providers (with encrypted keys) and models, and which model a turn uses."""

from __future__ import annotations

import uuid
from typing import Any

from msgspec import UNSET
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import SecretBox
from core.db.base import uuid7
from core.db.models import Agent, LlmModel, LlmProvider, Session
from core.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from core.schemas import llm as schemas
from core.services.common import changed_fields, get_or_404, page_of


def key_context(provider_id: uuid.UUID) -> str:
    return f"llm_provider:{provider_id}:api_key"


def provider_to_schema(row: LlmProvider) -> schemas.Provider:
    return schemas.Provider(
        id=row.id,
        name=row.name,
        provider_type=row.provider_type,  # type: ignore[arg-type]
        base_url=row.base_url,
        api_key_set=row.api_key_encrypted is not None,
        status=row.status,  # type: ignore[arg-type]
        settings=row.settings,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def model_to_schema(row: LlmModel) -> schemas.Model:
    return schemas.Model(
        id=row.id,
        provider_id=row.provider_id,
        model_id=row.model_id,
        display_name=row.display_name,
        capabilities=row.capabilities,
        is_default=row.is_default,
        status=row.status,  # type: ignore[arg-type]
        settings=row.settings,
        provider=schemas.ProviderSummary(
            id=row.provider.id,
            name=row.provider.name,
            provider_type=row.provider.provider_type,  # type: ignore[arg-type]
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# Providers


async def create_provider(
    db: AsyncSession, box: SecretBox | None, data: schemas.CreateProvider
) -> LlmProvider:
    # The id is known before insert: the key's ciphertext is bound to it.
    row = LlmProvider(
        id=uuid7(),
        name=data.name,
        provider_type=data.provider_type,
        base_url=data.base_url,
        status=data.status,
        settings=data.settings,
    )
    if data.api_key is not None:
        row.api_key_encrypted = _require(box).seal(data.api_key, key_context(row.id))
    db.add(row)
    await db.commit()
    return row


def _require(box: SecretBox | None) -> SecretBox:
    if box is None:
        raise ServiceUnavailable(
            "storing API keys needs SECRETS_ENCRYPTION_KEY (32 random bytes, base64) on the server"
        )
    return box


async def list_providers(db: AsyncSession, offset: int, limit: int) -> tuple[list[LlmProvider], int]:
    return await page_of(db, select(LlmProvider).order_by(LlmProvider.id), offset, limit)


async def get_provider(db: AsyncSession, provider_id: uuid.UUID) -> LlmProvider:
    return await get_or_404(db, LlmProvider, provider_id, "LLM provider")


async def update_provider(
    db: AsyncSession, box: SecretBox | None, provider_id: uuid.UUID, patch: schemas.UpdateProvider
) -> LlmProvider:
    row = await get_provider(db, provider_id)
    moves_key = patch.base_url is not UNSET and patch.base_url != row.base_url and row.api_key_encrypted
    if moves_key and patch.api_key is UNSET:
        # Otherwise the stored key would go to a host its owner never chose for it.
        raise InvalidInput(
            "changing base_url of a provider with a stored key needs api_key in the same request "
            "(the key again, or null to drop it)",
            field="api_key",
        )
    for field in ("name", "base_url", "status", "settings"):
        value = getattr(patch, field)
        if value is not UNSET:
            setattr(row, field, value)
    if patch.api_key is not UNSET:
        row.api_key_encrypted = (
            None if patch.api_key is None else _require(box).seal(patch.api_key, key_context(row.id))
        )
    await db.commit()
    return row


async def _users_of(db: AsyncSession, model_ids: Any) -> list[str]:
    """Who would lose their model: agents by name, sessions by id (the first few)."""
    agents = await db.execute(
        select(Agent.name).where(Agent.default_model_id.in_(model_ids)).order_by(Agent.name)
    )
    sessions = await db.execute(select(Session.id).where(Session.model_id.in_(model_ids)).limit(5))
    return [f"agent {name!r}" for name in agents.scalars()] + [f"session {s}" for s in sessions.scalars()]


async def delete_provider(db: AsyncSession, provider_id: uuid.UUID) -> None:
    row = await get_provider(db, provider_id)
    users = await _users_of(db, select(LlmModel.id).where(LlmModel.provider_id == row.id))
    if users:
        raise Conflict(f"the provider's models are in use by {', '.join(users)}; change those first")
    await db.delete(row)
    await db.commit()


async def api_key(box: SecretBox, row: LlmProvider) -> str | None:
    if row.api_key_encrypted is None:
        return None
    return box.open(row.api_key_encrypted, key_context(row.id))


async def rewrap_all(db: AsyncSession, box: SecretBox) -> int:
    """Re-encrypts every stored key under the current master key; returns how many changed."""
    changed = 0
    rows = (await db.execute(select(LlmProvider).where(LlmProvider.api_key_encrypted.is_not(None)))).scalars()
    for row in rows:
        assert row.api_key_encrypted is not None
        if box.needs_rewrap(row.api_key_encrypted):
            plaintext = box.open(row.api_key_encrypted, key_context(row.id))
            row.api_key_encrypted = box.seal(plaintext, key_context(row.id))
            changed += 1
    await db.commit()
    return changed


# Models


async def _clear_default(db: AsyncSession, except_id: uuid.UUID | None) -> None:
    query = update(LlmModel).where(LlmModel.is_default.is_(True))
    if except_id is not None:
        query = query.where(LlmModel.id != except_id)
    await db.execute(query.values(is_default=False))


async def create_model(db: AsyncSession, provider_id: uuid.UUID, data: schemas.CreateModel) -> LlmModel:
    provider = await get_provider(db, provider_id)
    if data.is_default:
        # Lock the current default so two concurrent "make me default" calls serialise.
        await db.execute(select(LlmModel.id).where(LlmModel.is_default.is_(True)).with_for_update())
        await _clear_default(db, None)
    row = LlmModel(
        provider_id=provider.id,
        model_id=data.model_id,
        display_name=data.display_name or data.model_id,
        capabilities=data.capabilities,
        is_default=data.is_default,
        status=data.status,
        settings=data.settings,
    )
    row.provider = provider
    db.add(row)
    await db.commit()
    return row


async def list_models(
    db: AsyncSession, offset: int, limit: int, provider_id: uuid.UUID | None = None
) -> tuple[list[LlmModel], int]:
    query = select(LlmModel).order_by(LlmModel.id)
    if provider_id is not None:
        await get_provider(db, provider_id)
        query = query.where(LlmModel.provider_id == provider_id)
    return await page_of(db, query, offset, limit)


async def get_model(db: AsyncSession, model_id: uuid.UUID) -> LlmModel:
    return await get_or_404(db, LlmModel, model_id, "LLM model")


async def update_model(db: AsyncSession, model_id: uuid.UUID, patch: schemas.UpdateModel) -> LlmModel:
    row = await get_model(db, model_id)
    values = changed_fields(patch)
    if values.get("is_default"):
        await db.execute(select(LlmModel.id).where(LlmModel.is_default.is_(True)).with_for_update())
        await _clear_default(db, row.id)
    for field, value in values.items():
        setattr(row, field, value)
    await db.commit()
    return row


async def delete_model(db: AsyncSession, model_id: uuid.UUID) -> None:
    row = await get_model(db, model_id)
    users = await _users_of(db, [row.id])
    if users:
        raise Conflict(f"the model is in use by {', '.join(users)}; change those first")
    await db.delete(row)
    await db.commit()


async def check_model_exists(db: AsyncSession, model_id: uuid.UUID | None, field: str) -> None:
    if model_id is not None and await db.get(LlmModel, model_id) is None:
        raise InvalidInput(f"{field}: no LLM model {model_id}", field=field)


async def resolve_model(
    db: AsyncSession,
    *,
    message_model_id: uuid.UUID | None,
    session_model_id: uuid.UUID | None,
    agent_model_id: uuid.UUID | None,
) -> LlmModel:
    """The model for a turn: the message's `controls.model_id`, else the session's, else the
    agent's default, else the one model marked default."""
    for source, candidate in (
        ("the message's controls.model_id", message_model_id),
        ("the session's model_id", session_model_id),
        ("the agent's default_model_id", agent_model_id),
    ):
        if candidate is not None:
            row = await db.get(LlmModel, candidate)
            if row is None:
                raise NotFound(f"{source} names LLM model {candidate}, which does not exist")
            return row
    default = (await db.execute(select(LlmModel).where(LlmModel.is_default.is_(True)))).scalar_one_or_none()
    if default is None:
        raise NotFound(
            "no model: none was chosen for the message, session or agent, and no model is the default"
        )
    return default


def completion_params(
    provider: LlmProvider, model: LlmModel, api_key: str | None, simulator_url: str
) -> dict[str, Any]:
    """litellm arguments for one model: which route, endpoint and key."""
    base = provider.base_url
    kind = provider.provider_type
    params: dict[str, Any] = {}
    if kind == "anthropic":
        params["model"] = f"anthropic/{model.model_id}"
    elif kind == "azure_openai":
        params["model"] = f"azure/{model.model_id}"
        if version := provider.settings.get("api_version"):
            params["api_version"] = version
    else:  # openai, openai_compatible, simulator: the OpenAI wire format
        params["model"] = f"openai/{model.model_id}"
    if kind == "simulator":
        base = base or simulator_url
        api_key = api_key or "simulator"
        params["extra_body"] = {"simulator": model.settings}
    if base:
        params["api_base"] = base
    if api_key:
        params["api_key"] = api_key
    return params
