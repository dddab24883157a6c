"""Per-request dependencies shared by the controllers."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from api.state import Services


async def provide_db_session(services: NamedDependency[Services]) -> AsyncIterator[AsyncSession]:
    async with services.db.session() as session:
        yield session
