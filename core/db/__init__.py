"""PostgreSQL through SQLAlchemy 2 async: the declarative base, the engine, and the models."""

from core.db.base import Base, TimestampedModel, TimestampMixin
from core.db.engine import Database
from core.ids import uuid7

__all__ = ["Base", "Database", "TimestampMixin", "TimestampedModel", "uuid7"]
