"""PostgreSQL through SQLAlchemy 2 async: the declarative base, the engine, and the models."""

from core.db.base import Base, TimestampedModel, TimestampMixin, uuid7
from core.db.engine import Database

__all__ = ["Base", "Database", "TimestampMixin", "TimestampedModel", "uuid7"]
