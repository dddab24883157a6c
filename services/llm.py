"""LLM providers (with encrypted keys) and models, and which model a turn uses."""

from __future__ import annotations

import uuid
from typing import Any

from msgspec import UNSET
from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import SecretBox
from core.db.models import Agent, LlmModel, LlmProvider, Session
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceUnavailable
from core.identity import Identity
from core.ids import uuid7
from core.net import check_public_url
from core.schemas import llm as schemas
from core.schemas.llm import SIMULATOR_TYPES
from services import model_profiles
from services.common import changed_fields, page_of


def key_context(provider_id: uuid.UUID) -> str:
    return f"llm_provider:{provider_id}:api_key"


def provider_to_schema(row: LlmProvider, who: Identity) -> schemas.Provider:
    """`base_url` only for whoever may change the provider: a shared provider's endpoint is often
    an internal address (a local model server), not for its users to know (as MCP servers' `url`)."""
    return schemas.Provider(
        id=row.id,
        name=row.name,
        provider_type=row.provider_type,
        base_url=row.base_url if _may_edit(who, row) else None,
        api_key_set=row.api_key_encrypted is not None,
        status=row.status,
        settings=row.settings,
        shared=row.owner_id is None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# Provider types that answer without a stored key: the simulator, and local OpenAI-compatible
# servers (vLLM, Ollama...), which usually take none.
KEYLESS = (*SIMULATOR_TYPES, "openai_compatible")


def healthy(model: LlmModel) -> bool:
    """Ready for use as far as the rows tell, without calling the provider: the model and its
    provider are active, and a key is stored or the provider type needs none (as Everruns does). A
    key the worker finds in its environment (OPENAI_API_KEY...) is not seen from here."""
    provider = model.provider
    return (
        model.status == "active"
        and provider.status == "active"
        and (provider.api_key_encrypted is not None or provider.provider_type in KEYLESS)
    )


def model_to_schema(row: LlmModel) -> schemas.Model:
    kind = row.provider.provider_type
    return schemas.Model(
        id=row.id,
        provider_id=row.provider_id,
        model_id=row.model_id,
        display_name=row.display_name,
        capabilities=row.capabilities,
        is_default=row.is_default,
        status=row.status,
        settings=row.settings,
        provider=schemas.ProviderSummary(
            id=row.provider.id,
            name=row.provider.name,
            provider_type=kind,
        ),
        provider_name=row.provider.name,
        provider_type=kind,
        enabled=row.status == "active",
        healthy=healthy(row),
        is_favorite=False,  # Everloop has no favourites
        source="manual",  # every model is added through the API; none is discovered or built in
        kind="embedding" if row.kind == "embedding" else "chat",
        model_vendor=model_profiles.vendor(kind, row.model_id),
        profile=model_profiles.profile(kind, row.model_id),
        shared=row.provider.owner_id is None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# Who sees what: an admin's providers (owner_id NULL) are shared with everyone and changed only by
# admins; anyone else's are theirs alone, with their models.


def _visible(who: Identity) -> ColumnElement[bool]:
    return or_(LlmProvider.owner_id.is_(None), LlmProvider.owner_id == who.user_id)


def _may_edit(who: Identity, provider: LlmProvider) -> bool:
    return provider.owner_id == who.user_id or (provider.owner_id is None and who.is_admin)


def _check_edit(who: Identity, provider: LlmProvider) -> None:
    if not _may_edit(who, provider):
        raise Forbidden(f"LLM provider {provider.id} is shared: only an admin may change it or its models")


# The provider types whose calls go through a client the worker pins to checked addresses
# (`core.net.PinnedTransport`): the only ones a user may give a base_url.
PINNABLE = ("openai", "openai_compatible", *SIMULATOR_TYPES)


def same_endpoint(old: str, new: str) -> bool:
    """Whether two provider types send calls to the same place (`llmsim` is `simulator`)."""
    return old == new or (old in SIMULATOR_TYPES and new in SIMULATOR_TYPES)


async def check_base_url(who: Identity, base_url: str | None, provider_type: str) -> None:
    """A user's provider may only call public internet addresses: the worker would otherwise fetch
    from inside the operator's network for them."""
    if base_url is None:
        return
    if not who.is_admin and provider_type not in PINNABLE:
        raise InvalidInput(
            f"base_url: only an admin may set it for a {provider_type} provider", field="base_url"
        )
    await check_public_url(base_url, "base_url", "a provider", any_address=who.is_admin)


# Providers


async def create_provider(
    db: AsyncSession, who: Identity, box: SecretBox | None, data: schemas.CreateProvider
) -> LlmProvider:
    await check_base_url(who, data.base_url, data.provider_type)
    # The id is known before insert: the key's ciphertext is bound to it.
    row = LlmProvider(
        id=uuid7(),
        owner_id=None if who.is_admin else who.user_id,
        name=data.name,
        provider_type=data.provider_type,
        base_url=data.base_url,
        status=data.status,
        settings=data.settings,
    )
    if data.api_key is not None:
        row.api_key_encrypted = require_secrets(box).seal(data.api_key, key_context(row.id))
    db.add(row)
    await db.commit()
    return row


def require_secrets(box: SecretBox | None) -> SecretBox:
    """The box that seals provider keys, or a 503 saying the server has no master key."""
    if box is None:
        raise ServiceUnavailable(
            "storing API keys needs SECRETS_ENCRYPTION_KEY (32 random bytes, base64) on the server"
        )
    return box


async def list_providers(
    db: AsyncSession, who: Identity, offset: int, limit: int | None
) -> tuple[list[LlmProvider], int]:
    """The providers the caller can see (and their count), from `offset`; all of them without `limit`."""
    query = select(LlmProvider).where(_visible(who)).order_by(LlmProvider.id)
    return await _rows(db, query, offset, limit)


async def get_provider(
    db: AsyncSession, who: Identity, provider_id: uuid.UUID, *, edit: bool = False
) -> LlmProvider:
    """A provider the caller can see (else 404); with `edit`, one they may change (else 403)."""
    row = await db.get(LlmProvider, provider_id)
    if row is None or not (row.owner_id is None or row.owner_id == who.user_id):
        raise NotFound(f"LLM provider {provider_id} not found")
    if edit:
        _check_edit(who, row)
    return row


async def update_provider(
    db: AsyncSession,
    who: Identity,
    box: SecretBox | None,
    provider_id: uuid.UUID,
    patch: schemas.UpdateProvider,
) -> LlmProvider:
    row = await get_provider(db, who, provider_id, edit=True)
    kind = row.provider_type if patch.provider_type is UNSET else patch.provider_type
    base_url = row.base_url if patch.base_url is UNSET else patch.base_url
    if patch.base_url is not UNSET or kind != row.provider_type:
        # A new type may not keep a base_url a user may not set for it.
        await check_base_url(who, base_url, kind)
    moves_key = row.api_key_encrypted and (
        base_url != row.base_url or not same_endpoint(row.provider_type, kind)
    )
    if moves_key and patch.api_key is UNSET:
        # Otherwise the stored key would go to a host its owner never chose for it.
        what = "base_url" if base_url != row.base_url else "provider_type"
        raise InvalidInput(
            f"changing {what} of a provider with a stored key needs api_key in the same request "
            "(the key again, or null to drop it)",
            field="api_key",
        )
    for field in ("name", "provider_type", "base_url", "status", "settings"):
        value = getattr(patch, field)
        if value is not UNSET:
            setattr(row, field, value)
    if patch.api_key is not UNSET:
        row.api_key_encrypted = (
            None if patch.api_key is None else require_secrets(box).seal(patch.api_key, key_context(row.id))
        )
    await db.commit()
    return row


async def _users_of(db: AsyncSession, who: Identity, model_ids: Any) -> list[str]:
    """Who would lose their model: the caller's agents by name and sessions by id (the first few);
    anyone else's only as a count (a shared model's users are not the admin's to see)."""
    mine, others = Agent.owner_id == who.user_id, Agent.owner_id != who.user_id
    uses_agent = Agent.default_model_id.in_(model_ids)
    uses_session = Session.model_id.in_(model_ids)
    names = await db.execute(select(Agent.name).where(uses_agent, mine).order_by(Agent.name).limit(5))
    sessions = await db.execute(
        select(Session.id).join(Agent, Agent.id == Session.agent_id).where(uses_session, mine).limit(5)
    )
    counted = await db.execute(
        select(
            select(func.count()).select_from(Agent).where(uses_agent, others).scalar_subquery(),
            select(func.count())
            .select_from(Session)
            .join(Agent, Agent.id == Session.agent_id)
            .where(uses_session, others)
            .scalar_subquery(),
        )
    )
    found = [f"agent {name!r}" for name in names.scalars()] + [f"session {sid}" for sid in sessions.scalars()]
    if other := sum(counted.one()):
        found.append(f"{other} agent(s) or session(s) of other users")
    return found


async def delete_provider(db: AsyncSession, who: Identity, provider_id: uuid.UUID) -> None:
    row = await get_provider(db, who, provider_id, edit=True)
    users = await _users_of(db, who, select(LlmModel.id).where(LlmModel.provider_id == row.id))
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


def _check_default(who: Identity, provider: LlmProvider) -> None:
    if provider.owner_id is not None or not who.is_admin:
        raise Forbidden("only an admin may make a model the default, and only on a shared provider")


async def create_model(
    db: AsyncSession, who: Identity, provider_id: uuid.UUID, data: schemas.CreateModel
) -> LlmModel:
    provider = await get_provider(db, who, provider_id, edit=True)
    if data.is_default:
        _check_default(who, provider)
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
        kind=data.kind,
    )
    row.provider = provider
    db.add(row)
    await db.commit()
    return row


async def list_models(
    db: AsyncSession, who: Identity, offset: int, limit: int | None, provider_id: uuid.UUID | None = None
) -> tuple[list[LlmModel], int]:
    """The models the caller can see (and their count), from `offset`; all of them without `limit`."""
    query = select(LlmModel).join(LlmProvider).where(_visible(who)).order_by(LlmModel.id)
    if provider_id is not None:
        await get_provider(db, who, provider_id)
        query = query.where(LlmModel.provider_id == provider_id)
    return await _rows(db, query, offset, limit)


async def _rows(
    db: AsyncSession, query: Select[Any], offset: int, limit: int | None
) -> tuple[list[Any], int]:
    """A page of `query` and the count of all it selects; without `limit`, everything from `offset`."""
    if limit is not None:
        return await page_of(db, query, offset, limit)
    rows = list((await db.execute(query.offset(offset))).scalars())
    if rows or offset == 0:
        return rows, offset + len(rows)  # everything from offset on: the count is known
    total = await db.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    return rows, int(total.scalar_one())


async def get_model(db: AsyncSession, who: Identity, model_id: uuid.UUID, *, edit: bool = False) -> LlmModel:
    """A model the caller can see (else 404); with `edit`, one they may change (else 403)."""
    row = await db.get(LlmModel, model_id)
    if row is None or not (row.provider.owner_id is None or row.provider.owner_id == who.user_id):
        raise NotFound(f"LLM model {model_id} not found")
    if edit:
        _check_edit(who, row.provider)
    return row


async def update_model(
    db: AsyncSession, who: Identity, model_id: uuid.UUID, patch: schemas.UpdateModel
) -> LlmModel:
    row = await get_model(db, who, model_id, edit=True)
    values = changed_fields(patch)
    if "is_default" in values:
        _check_default(who, row.provider)
    if values.get("is_default"):
        await db.execute(select(LlmModel.id).where(LlmModel.is_default.is_(True)).with_for_update())
        await _clear_default(db, row.id)
    for field, value in values.items():
        setattr(row, field, value)
    await db.commit()
    return row


async def delete_model(db: AsyncSession, who: Identity, model_id: uuid.UUID) -> None:
    row = await get_model(db, who, model_id, edit=True)
    users = await _users_of(db, who, [row.id])
    if users:
        raise Conflict(f"the model is in use by {', '.join(users)}; change those first")
    await db.delete(row)
    await db.commit()


async def check_model_exists(db: AsyncSession, who: Identity, model_id: uuid.UUID | None, field: str) -> None:
    """A model the caller may use: shared, or on one of their own providers."""
    if model_id is None:
        return
    query = select(LlmModel.id).join(LlmProvider).where(LlmModel.id == model_id, _visible(who))
    if (await db.execute(query)).first() is None:
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
    else:  # openai, openai_compatible, simulator (llmsim): the OpenAI wire format
        params["model"] = f"openai/{model.model_id}"
    if kind in SIMULATOR_TYPES:
        base = base or simulator_url
        api_key = api_key or "simulator"
        params["extra_body"] = {"simulator": model.settings}
    if base:
        params["api_base"] = base
    if api_key:
        params["api_key"] = api_key
    return params
