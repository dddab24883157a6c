"""The SQL statements a database's engine sends, for tests that count reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from core.db import Database


def statements_with(db: Database, needle: str) -> list[str]:
    """A list that collects, from now on, every statement `db` sends that contains `needle`."""
    seen: list[str] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def sent(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if needle in statement:
            seen.append(statement)

    return seen
