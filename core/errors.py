"""Domain errors. Services raise these; `api/errors.py` maps them to HTTP in one place."""

from __future__ import annotations

import re


class EverloopError(Exception):
    status_code = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(EverloopError):
    status_code = 400


class Forbidden(EverloopError):
    """The caller can see the resource but may not do this to it (never used to hide one: that is 404)."""

    status_code = 403


class NotFound(EverloopError):
    status_code = 404


class Conflict(EverloopError):
    status_code = 409


class BadGateway(EverloopError):
    """A server the caller configured (an MCP server) failed to answer."""

    status_code = 502


class TooLarge(EverloopError):
    """Over a size limit: a request body, a stored file, or a quota."""

    status_code = 413


class UnsupportedMediaType(EverloopError):
    """A body in an encoding the route does not read (OTLP: neither protobuf nor JSON)."""

    status_code = 415


class ServiceUnavailable(EverloopError):
    status_code = 503


# msgspec names the failing value inside its message: "... - at `$.message.content[0]`" or
# "Object missing required field `count`".
_AT_PATH = re.compile(r"at `\$\.?([^`]*)`")
_FIELD = re.compile(r"field `([^`]+)`")


def field_in(message: str) -> str | None:
    """The field a msgspec validation message is about, if it names one."""
    found = _AT_PATH.search(message) or _FIELD.search(message)
    return found.group(1) if found and found.group(1) else None
