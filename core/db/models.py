"""Every table, imported here so Alembic and the tests see the whole schema.

The resource tables (agents, sessions, messages, events, ...) arrive with the issues that own them.
"""

from core.db.base import Base

__all__ = ["Base"]
