"""A session's todo list: nothing of its own, just the latest successful `write_todos` result."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from capabilities.stateless_todo_list import TOOL_NAME
from core.db.models import Message
from core.identity import Identity
from core.schemas.capabilities import SessionTodos, Todo
from core.schemas.content import ToolResultPart, content_from_json, result_value
from services import sessions


async def latest(db: AsyncSession, who: Identity, agent_id: uuid.UUID, session_id: uuid.UUID) -> SessionTodos:
    await sessions.get(db, who, agent_id, session_id)  # 404 for anyone else's session
    query = (
        select(Message)
        .where(
            Message.session_id == session_id,
            Message.role == "tool_result",
            Message.metadata_["tool_name"].astext == TOOL_NAME,
            Message.metadata_["status"].astext == "success",
        )
        .order_by(Message.sequence.desc())
        .limit(1)
    )
    row = (await db.execute(query)).scalar_one_or_none()
    if row is None:
        return SessionTodos(todos=[], updated_at=None, message_id=None)
    parts = [p for p in content_from_json(row.content) if isinstance(p, ToolResultPart)]
    result = (result_value(parts[0]) if parts else None) or {}
    todos = msgspec.convert(result.get("todos", []), list[Todo])
    return SessionTodos(todos=todos, updated_at=row.created_at, message_id=row.id)
