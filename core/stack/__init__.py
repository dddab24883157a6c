"""The embedded stack: PostgreSQL, Redis and Temporal from wheels, for `everloop dev` and the tests."""

from core.stack.errors import StackError
from core.stack.stack import EmbeddedStack, Endpoints

__all__ = ["EmbeddedStack", "Endpoints", "StackError"]
