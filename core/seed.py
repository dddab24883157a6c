"""What `everloop dev` puts in an empty database, so a fresh install can chat at once."""

from __future__ import annotations

from sqlalchemy import select

from core.db import Database, uuid7
from core.db.models import Agent, LlmModel, LlmProvider

SIMULATOR_NAME = "Simulator"
DEMO_AGENT_NAME = "Demo agent"


async def seed_dev_data(database_url: str) -> list[str]:
    """Adds the simulator provider, a default model on it and a demo agent, once. Returns what it
    added (nothing when a simulator provider already exists, even if the user changed it since)."""
    db = Database(database_url, pool_size=1)
    try:
        async with db.session() as session:
            exists = await session.execute(
                select(LlmProvider.id).where(LlmProvider.provider_type == "simulator")
            )
            if exists.first() is not None:
                return []
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
                model_id="sim-echo",
                display_name="Simulator (echo)",
                capabilities=["chat", "tools", "streaming"],
                is_default=has_default is None,
                settings={},
            )
            session.add_all([provider, model])
            await session.flush()  # the agent's foreign key needs the model row first
            agent = Agent(
                name=DEMO_AGENT_NAME,
                description="Answers through the built-in simulator; can do arithmetic with test_math.",
                system_prompt="You are a helpful assistant. Use tools when they help.",
                capabilities=["test_math"],
                default_model_id=model.id,
            )
            session.add(agent)
            await session.commit()
            return [f"LLM provider {provider.name!r}", f"model {model.model_id!r}", f"agent {agent.name!r}"]
    finally:
        await db.dispose()
