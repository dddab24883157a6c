"""Who may reach a session's files: the ownership check of the `/fs` routes. The tree itself is
`core/file_store.py`, which the `session_file_system` capability uses too."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from core.identity import Identity
from services import agents, sessions


async def owned(
    db: AsyncSession, who: Identity, agent_id: uuid.UUID, session_id: uuid.UUID, *, changing: bool = False
) -> uuid.UUID:
    """The session whose files the caller means: NotFound for anyone else's. Changing the files of
    an archived agent's session is a Conflict (its sessions are read-only)."""
    await sessions.get(db, who, agent_id, session_id)
    if changing:
        sessions.require_active(await agents.get(db, who, agent_id))
    return session_id
