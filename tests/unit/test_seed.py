from __future__ import annotations

from sqlalchemy import select

from core.db import Database
from core.db.models import Agent, LlmModel, LlmProvider
from core.seed import seed_dev_data
from core.stack import Endpoints


async def test_seed_adds_a_chattable_setup_once(db: Database, endpoints: Endpoints) -> None:
    added = await seed_dev_data(endpoints.database_url)
    assert len(added) == 3
    assert await seed_dev_data(endpoints.database_url) == []
    async with db.session() as s:
        [provider] = (await s.execute(select(LlmProvider))).scalars().all()
        [model] = (await s.execute(select(LlmModel))).scalars().all()
        [agent] = (await s.execute(select(Agent))).scalars().all()
    assert provider.provider_type == "simulator"
    assert model.provider_id == provider.id and model.is_default
    assert agent.default_model_id == model.id and agent.capabilities == ["test_math"]
