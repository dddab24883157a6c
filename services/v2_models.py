"""Opper's `/v2/models` and `/v2/models/custom` over the one model table (`llm_models`).

A custom model is an `LlmModel` row whose `alias` is its name, on a provider its owner owns: the
row's `model_id` is the identifier without its litellm route (`openai/gpt-4o` → `gpt-4o` on an
OpenAI-format provider), its `settings` the options (`extra`). Ownership is the provider's: a
shared (admin's) provider's models are everyone's, so a custom model never lives on one. Which
provider serves it (docs/v2.md "Models"):

1. `api_key` given: a private provider made for this model alone (`settings.custom_model`), of the
   identifier's route's type, at `extra.api_base` if given (a user's only on a public address,
   `llm.check_base_url`), the key sealed like every provider key. It goes with the model.
2. else `extra.provider_id`: one of the caller's own providers.
3. else the caller's newest own provider of the identifier's route.

Rules 2 and 3 never pick another model's private provider: a model would otherwise be served with
that model's key and go when it goes (the provider's models cascade with it).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from msgspec import UNSET
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import SecretBox
from core.db.models import LlmModel, LlmProvider
from core.errors import Conflict, InvalidInput, NotFound
from core.identity import Identity
from core.ids import uuid7
from core.net import BlockedAddress, NetPolicy, check_public_url, resolve_public
from core.schemas import v2_models as schema
from core.schemas.llm import SIMULATOR_TYPES, ProviderType
from core.schemas.v2_traces import ListMeta, V2Page
from services import llm, model_calls, model_names, model_profiles

# The litellm route of an identifier → the provider type a model's own key gets.
ROUTE_TYPES: dict[str, ProviderType] = {"openai": "openai", "anthropic": "anthropic", "azure": "azure_openai"}
# `extra` keys that say where the model is served: kept on the provider, not in the options.
BINDING_KEYS = ("provider_id", "api_base")
LOCATION = "global"


# ------------------------------------------------------------------------------------ all models


def prices(provider_type: str, model_id: str) -> tuple[float | None, float | None]:
    """Input and output cost per token from litellm's table (any mode: embeddings are priced too)."""
    if provider_type not in model_profiles.LOOKUP:
        return None, None
    prefixes, accepted = model_profiles.LOOKUP[provider_type]
    for prefix in prefixes:
        found = model_profiles.table().get(prefix + model_id)
        if found is not None and (accepted is None or found.get("litellm_provider") in accepted):
            given, made = found.get("input_cost_per_token"), found.get("output_cost_per_token")
            return (
                float(given) if isinstance(given, int | float) else None,
                float(made) if isinstance(made, int | float) else None,
            )
    return None, None


def to_language_model(row: LlmModel, who: Identity) -> schema.LanguageModel:
    provider = row.provider
    litellm_name = model_names.route_name(provider.provider_type, row.model_id)
    given, made = prices(provider.provider_type, row.model_id)
    return schema.LanguageModel(
        name=row.alias or litellm_name,
        hosting_provider=provider.provider_type,
        location=LOCATION,
        input_cost_per_token=given,
        output_cost_per_token=made,
        id=row.id,
        kind="embedding" if row.kind == "embedding" else "chat",
        litellm_name=litellm_name,
        model_id=row.model_id,
        provider_id=provider.id,
        provider_name=provider.name,
        custom=row.alias is not None and provider.owner_id == who.user_id,
        status=row.status if provider.status == "active" else provider.status,
    )


async def list_models(
    db: AsyncSession, who: Identity, offset: int, limit: int, kind: str | None = None
) -> V2Page[schema.LanguageModel]:
    """Every model the caller may use: its own providers' and the deployment's; its own first."""
    query = (
        select(LlmModel)
        .join(LlmProvider, LlmProvider.id == LlmModel.provider_id)
        .where(model_names.visible(who.user_id))
    )
    if kind is not None:
        query = query.where(LlmModel.kind == kind)
    total = await db.scalar(select(func.count()).select_from(query.subquery()))
    rows = await db.scalars(
        query.order_by(LlmProvider.owner_id.is_(None), LlmModel.created_at, LlmModel.id)
        .offset(offset)
        .limit(limit)
    )
    return V2Page(data=[to_language_model(r, who) for r in rows], meta=ListMeta(total_count=total or 0))


# --------------------------------------------------------------------------------- custom models


def _mine(who: Identity) -> ColumnElement[bool]:
    return (LlmProvider.owner_id == who.user_id) & LlmModel.alias.is_not(None)


def to_custom(row: LlmModel) -> schema.CustomModel:
    provider = row.provider
    return schema.CustomModel(
        id=row.id,
        name=row.alias or row.model_id,
        identifier=model_names.route_name(provider.provider_type, row.model_id),
        extra=dict(row.settings or {}),
        kind="embedding" if row.kind == "embedding" else "chat",
        provider_id=provider.id,
        api_key_set=bool(provider.settings.get("custom_model")) and provider.api_key_encrypted is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _owned(
    db: AsyncSession, who: Identity, model_pk: uuid.UUID | None = None, name: str | None = None
) -> LlmModel:
    query = select(LlmModel).join(LlmProvider, LlmProvider.id == LlmModel.provider_id).where(_mine(who))
    query = (
        query.where(LlmModel.id == model_pk) if model_pk is not None else query.where(LlmModel.alias == name)
    )
    found = (await db.execute(query.limit(1))).scalars().first()
    if found is None:
        raise NotFound("custom model not found")
    return found


async def get_custom(db: AsyncSession, who: Identity, model_pk: uuid.UUID) -> schema.CustomModel:
    return to_custom(await _owned(db, who, model_pk=model_pk))


async def get_custom_by_name(db: AsyncSession, who: Identity, name: str) -> schema.CustomModel:
    return to_custom(await _owned(db, who, name=name))


async def list_custom(db: AsyncSession, who: Identity, offset: int, limit: int) -> V2Page[schema.CustomModel]:
    query = select(LlmModel).join(LlmProvider, LlmProvider.id == LlmModel.provider_id).where(_mine(who))
    total = await db.scalar(select(func.count()).select_from(query.subquery()))
    rows = await db.scalars(query.order_by(LlmModel.created_at, LlmModel.id).offset(offset).limit(limit))
    return V2Page(data=[to_custom(r) for r in rows], meta=ListMeta(total_count=total or 0))


async def _check_name_free(db: AsyncSession, who: Identity, name: str, but: uuid.UUID | None = None) -> None:
    # One writer of the caller's names at a time (until commit): two registrations of one name
    # cannot both pass the check below.
    await db.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"custom_model:{who.user_id}", 0)))
    )
    query = select(LlmModel.id).join(LlmProvider, LlmProvider.id == LlmModel.provider_id)
    query = query.where(_mine(who), LlmModel.alias == name)
    if but is not None:
        query = query.where(LlmModel.id != but)
    if (await db.execute(query.limit(1))).first() is not None:
        raise Conflict(f"name: you already have a custom model named {name!r}", field="name")


def _split(identifier: str) -> tuple[str | None, str]:
    route, _, rest = identifier.partition("/")
    return (route, rest) if rest and route in ROUTE_TYPES else (None, identifier)


def _model_id_on(provider: LlmProvider, identifier: str) -> str:
    """The identifier as the provider's model id: without the litellm route the provider's calls
    add again (services/llm.completion_params); a route that is not the provider's is refused."""
    route, rest = _split(identifier)
    own_route = model_names.ROUTE_PREFIX.get(provider.provider_type, "openai")
    if route is None:
        return identifier
    if route != own_route:
        raise InvalidInput(
            f"identifier: {identifier!r} is a {route} model, but provider {provider.id} is called "
            f"through litellm's {own_route} route",
            field="identifier",
        )
    return rest


def _options(extra: dict[str, Any] | None, provider: LlmProvider) -> dict[str, Any]:
    options = {k: v for k, v in (extra or {}).items() if k not in BINDING_KEYS}
    if provider.provider_type not in SIMULATOR_TYPES:
        refused = sorted(set(options) - model_calls.CALL_OPTIONS)
        if refused:
            raise InvalidInput(
                f"extra: {', '.join(refused)} may not be set on a custom model; its options are "
                f"{', '.join(sorted(model_calls.CALL_OPTIONS))} (and provider_id / api_base to say "
                "where it is served)",
                field="extra",
            )
    return options


async def _own_provider(
    db: AsyncSession, who: Identity, extra: dict[str, Any] | None, identifier: str
) -> LlmProvider:
    """Where a model without its own key is served (rules 2 and 3 of the module's doc)."""
    wanted = (extra or {}).get("provider_id")
    if wanted is not None:
        try:
            provider_pk = uuid.UUID(str(wanted))
        except ValueError:
            raise InvalidInput("extra.provider_id: not a provider id", field="extra.provider_id") from None
        found = await db.get(LlmProvider, provider_pk)
        if found is None or found.owner_id != who.user_id or found.settings.get("custom_model"):
            raise InvalidInput(
                f"extra.provider_id: you have no provider {provider_pk} (a custom model is served by one "
                "of your own providers, or by its own api_key)",
                field="extra.provider_id",
            )
        return found
    route, _ = _split(identifier)
    query = select(LlmProvider).where(
        LlmProvider.owner_id == who.user_id, LlmProvider.settings["custom_model"].astext.is_(None)
    )
    if route is not None:
        types = [t for t, prefix in model_names.ROUTE_PREFIX.items() if prefix == route]
        query = query.where(
            LlmProvider.provider_type.in_(types)
            if types
            else LlmProvider.provider_type.not_in(model_names.ROUTE_PREFIX)
        )
    found = (await db.execute(query.order_by(LlmProvider.created_at.desc()).limit(1))).scalars().first()
    if found is None:
        raise InvalidInput(
            "identifier: none of your providers serves it; give api_key (the model's own key), or "
            "extra.provider_id (one of your providers: POST /v1/llm-providers)",
            field="identifier",
        )
    return found


async def _check_own_endpoint(base_url: str | None, provider_type: str, policy: NetPolicy) -> None:
    """A model's own endpoint (`extra.api_base`), checked as every call to it will be checked.
    Its private provider is owned by the caller, an admin too (a custom model is never shared), so
    `ModelAccess.check_address` treats it as a user's provider on every call: a public address
    of an OpenAI-format endpoint only. The same rule here refuses at registration what each call
    would refuse (an admin's local model server is a shared provider: POST /v1/llm-providers)."""
    if base_url is None:
        return
    if provider_type not in llm.PINNABLE:
        raise InvalidInput(
            f"extra.api_base: a custom model's own {provider_type} endpoint cannot be set (only an "
            "openai/... model's); register a provider for it instead",
            field="extra.api_base",
        )
    await check_public_url(base_url, "extra.api_base", "a custom model", any_address=True)  # its form
    parts = urlsplit(base_url)
    try:
        await resolve_public(
            parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), policy
        )
    except BlockedAddress as exc:
        raise InvalidInput(
            f"extra.api_base: {exc}; a custom model's own endpoint must be a public address (a local "
            "model server is served through a provider: POST /v1/llm-providers)",
            field="extra.api_base",
        ) from None


async def _release(db: AsyncSession, provider: LlmProvider) -> None:
    """Deletes a model's private provider once no model is served by it (its models cascade)."""
    if not provider.settings.get("custom_model"):
        return
    used = await db.scalar(select(LlmModel.id).where(LlmModel.provider_id == provider.id).limit(1))
    if used is None:
        await db.delete(provider)


async def _keyed_provider(
    db: AsyncSession,
    who: Identity,
    box: SecretBox | None,
    name: str,
    identifier: str,
    api_key: str,
    extra: dict[str, Any] | None,
    reuse: LlmProvider | None,
    policy: NetPolicy,
) -> LlmProvider:
    """A private provider holding the model's own key (rule 1): `reuse`d when it is already the
    model's own (a new key replaces the old one), else made."""
    route, _ = _split(identifier)
    if route is None:
        raise InvalidInput(
            "identifier: a model with its own api_key needs litellm's provider/model form "
            f"({', '.join(f'{r}/...' for r in ROUTE_TYPES)})",
            field="identifier",
        )
    provider_type = ROUTE_TYPES[route]
    base_url = (extra or {}).get("api_base")
    if base_url is not None and not isinstance(base_url, str):
        raise InvalidInput("extra.api_base: must be a URL", field="extra.api_base")
    await _check_own_endpoint(base_url, provider_type, policy)
    sealer = llm.require_secrets(box)
    if reuse is None:
        # The id is known before insert: the key's ciphertext is bound to it.
        reuse = LlmProvider(id=uuid7(), owner_id=who.user_id, settings={"custom_model": True})
        db.add(reuse)
    reuse.name = f"custom model {name}"[:200]
    reuse.provider_type = provider_type
    reuse.base_url = base_url
    reuse.api_key_encrypted = sealer.seal(api_key, llm.key_context(reuse.id))
    return reuse


async def register_custom(
    db: AsyncSession,
    who: Identity,
    box: SecretBox | None,
    data: schema.RegisterCustomModel,
    policy: NetPolicy | None = None,
) -> schema.CustomModel:
    """`policy`: the process's outbound rule (the one its model calls use)."""
    await _check_name_free(db, who, data.name)
    if data.api_key is not None:
        provider = await _keyed_provider(
            db, who, box, data.name, data.identifier, data.api_key, data.extra, None, policy or NetPolicy()
        )
    else:
        provider = await _own_provider(db, who, data.extra, data.identifier)
    row = LlmModel(
        provider_id=provider.id,
        model_id=_model_id_on(provider, data.identifier),
        display_name=data.name,
        alias=data.name,
        kind=data.kind,
        settings=_options(data.extra, provider),
    )
    row.provider = provider
    db.add(row)
    await db.commit()
    return await get_custom(db, who, row.id)


async def update_custom(
    db: AsyncSession,
    who: Identity,
    box: SecretBox | None,
    model_pk: uuid.UUID,
    data: schema.UpdateCustomModel,
    policy: NetPolicy | None = None,
) -> schema.CustomModel:
    row = await _owned(db, who, model_pk=model_pk)
    provider = row.provider
    own = bool(provider.settings.get("custom_model"))
    name = (row.alias or row.model_id) if data.name is UNSET else data.name
    identifier = (
        model_names.route_name(provider.provider_type, row.model_id)
        if data.identifier is UNSET
        else data.identifier
    )
    if data.extra is not UNSET:
        extra = dict(data.extra or {})
    else:
        extra = dict(row.settings or {})
        if own and provider.base_url:
            extra["api_base"] = provider.base_url  # the model's own endpoint stays
    if data.name is not UNSET:
        await _check_name_free(db, who, data.name, but=row.id)
    if isinstance(data.api_key, str):
        provider = await _keyed_provider(
            db,
            who,
            box,
            name,
            identifier,
            data.api_key,
            extra,
            provider if own else None,
            policy or NetPolicy(),
        )
    elif data.api_key is None and own:
        # The model's own key dropped: served by one of the caller's providers from now on.
        provider = await _own_provider(db, who, extra, identifier)
    elif own and (data.identifier is not UNSET or "api_base" in extra):
        # The key stays with its endpoint: a new route or address needs the key again.
        new_base = extra.get("api_base")
        if (
            new_base != provider.base_url
            or ROUTE_TYPES.get(_split(identifier)[0] or "") != provider.provider_type
        ):
            raise InvalidInput(
                "api_key: changing where a model with its own key is served needs api_key again",
                field="api_key",
            )
    elif not own and data.extra is not UNSET and "provider_id" in extra:
        provider = await _own_provider(db, who, extra, identifier)
    old_provider = row.provider
    row.provider_id = provider.id
    row.provider = provider
    row.model_id = _model_id_on(provider, identifier)
    row.alias = name
    row.display_name = name
    if data.kind is not UNSET:
        row.kind = data.kind
    row.settings = _options(extra, provider)
    row.updated_at = func.now()
    await db.flush()
    if old_provider.id != provider.id:
        await _release(db, old_provider)
    await db.commit()
    db.expire_all()  # the row's updated_at (and a replaced provider) are read again
    return await get_custom(db, who, model_pk)


async def delete_custom(db: AsyncSession, who: Identity, model_pk: uuid.UUID) -> None:
    """Deletes the model (409 while an agent or session uses it) and its own provider, if any."""
    row = await _owned(db, who, model_pk=model_pk)
    provider = row.provider
    await llm.delete_model(db, who, row.id)
    if provider.settings.get("custom_model"):
        await _release(db, provider)
        await db.commit()
