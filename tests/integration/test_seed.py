from __future__ import annotations

from sqlalchemy import select

from core.db import Database
from core.db.models import Agent, LlmModel, LlmProvider, User
from core.identity import BUILTIN_ADMIN_ID
from core.settings import Settings
from everloop.seed import seed_dev_data
from everloop.stack import Endpoints
from tests.conftest import make_settings


async def test_seed_adds_a_chattable_setup_once(
    db: Database, endpoints: Endpoints, settings: Settings
) -> None:
    added = await seed_dev_data(endpoints.database_url, settings)
    assert len(added) == 3
    assert await seed_dev_data(endpoints.database_url, settings) == []
    async with db.session() as s:
        [provider] = (await s.execute(select(LlmProvider))).scalars().all()
        [model] = (await s.execute(select(LlmModel))).scalars().all()
        [agent] = (await s.execute(select(Agent))).scalars().all()
    assert provider.provider_type == "simulator"
    assert model.provider_id == provider.id and model.is_default
    # The tool-using simulator mode, so the demo agent's first chat shows a tool loop.
    assert (model.model_id, model.settings) == ("sim-agent", {"mode": "agent"})
    assert "Try: what is 12 times 7?" in (agent.description or "")
    assert agent.default_model_id == model.id and agent.capabilities == ["test_math"]
    assert agent.owner_id == BUILTIN_ADMIN_ID and provider.owner_id is None  # shared with everyone


async def test_with_an_admin_account_the_seeded_agent_is_the_admins(
    db: Database, endpoints: Endpoints
) -> None:
    admin = make_settings(
        endpoints,
        AUTH_MODE="admin",
        ADMIN_EMAIL="boss@example.com",
        ADMIN_PASSWORD="correct horse",
        AUTH_JWT_SECRET="x" * 32,
    )
    await seed_dev_data(endpoints.database_url, admin)
    async with db.session() as s:
        agent = (await s.execute(select(Agent))).scalar_one()
        user = (await s.execute(select(User).where(User.email == "boss@example.com"))).scalar_one()
    assert agent.owner_id == user.id
