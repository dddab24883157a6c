"""What `everloop dev` puts in an empty database, so a fresh install can chat at once."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database, uuid7
from core.db.models import Agent, LlmModel, LlmProvider
from core.identity import BUILTIN_ADMIN_ID
from core.settings import AuthMode, Settings
from services.auth import ensure_admin, ensure_builtin_admin

SIMULATOR_NAME = "Simulator"
DEMO_AGENT_NAME = "Demo agent"
SEED_MODEL_ID = "sim-agent"


async def seed_dev_data(database_url: str, settings: Settings) -> list[str]:
    """Adds the simulator provider, a default model on it and a demo agent, once. Returns what it
    added (nothing when a simulator provider already exists, even if the user changed it since).
    The agent belongs to AUTH_MODE=none's built-in admin, or to ADMIN_EMAIL when that is set."""
    db = Database(database_url, pool_size=1, timeouts=settings.database_timeouts)
    try:
        async with db.session() as session:
            exists = await session.execute(
                select(LlmProvider.id).where(LlmProvider.provider_type == "simulator")
            )
            if exists.first() is not None:
                return []
            owner_id = await _owner(session, settings)
            provider = LlmProvider(
                name=SIMULATOR_NAME,
                provider_type="simulator",
                base_url=None,  # this server's own /simulator/v1
                settings={},
            )
            has_default = (await session.execute(select(LlmModel.id).where(LlmModel.is_default))).first()
            model = LlmModel(
                id=uuid7(),
                provider=provider,
                model_id=SEED_MODEL_ID,
                display_name="Simulator (tool-using)",
                capabilities=["chat", "tools", "streaming"],
                is_default=has_default is None,
                # A model's settings are the simulator object of its requests (services/llm.py):
                # `agent` mode calls the demo agent's tools, so the first chat shows a tool loop.
                settings={"mode": "agent"},
            )
            session.add_all([provider, model])
            await session.flush()  # the agent's foreign key needs the model row first
            agent = Agent(
                owner_id=owner_id,
                name=DEMO_AGENT_NAME,
                description=(
                    "Answers through the built-in simulator, calling test_math's tools for arithmetic. "
                    "Try: what is 12 times 7?"
                ),
                system_prompt="You are a helpful assistant. Use tools when they help.",
                capabilities=["test_math"],
                default_model_id=model.id,
            )
            session.add(agent)
            await session.commit()
            return [f"LLM provider {provider.name!r}", f"model {model.model_id!r}", f"agent {agent.name!r}"]
    finally:
        await db.dispose()


async def _owner(session: AsyncSession, settings: Settings) -> uuid.UUID:
    if settings.auth_mode is not AuthMode.NONE and settings.admin_email and settings.admin_password:
        return (await ensure_admin(session, settings.admin_email, settings.admin_password)).id
    await ensure_builtin_admin(session)
    return BUILTIN_ADMIN_ID
