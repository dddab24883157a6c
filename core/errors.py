"""Domain errors. Services raise these; `api/errors.py` maps them to HTTP in one place."""

from __future__ import annotations


class EverloopError(Exception):
    status_code = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(EverloopError):
    status_code = 400


class NotFound(EverloopError):
    status_code = 404


class Conflict(EverloopError):
    status_code = 409


class ServiceUnavailable(EverloopError):
    status_code = 503
