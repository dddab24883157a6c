"""The embedded stack: PostgreSQL, Redis and Temporal from wheels, for `everloop dev` and the tests."""

from everloop.stack.errors import StackError
from everloop.stack.stack import EmbeddedStack, Endpoints

__all__ = ["EmbeddedStack", "Endpoints", "StackError"]
