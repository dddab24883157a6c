"""Per-request dependencies shared by the controllers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from api.state import Services
from core.identity import Identity


async def provide_db_session(services: NamedDependency[Services]) -> AsyncIterator[AsyncSession]:
    async with services.db.session() as session:
        yield session


def provide_identity(request: Request[Identity, Any, Any]) -> Identity:
    """The caller as the authentication middleware proved it; owned resources are checked against it."""
    return request.user
