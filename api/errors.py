"""The one error mapping: every error leaves as `{"error": "...", "status": N}` JSON (under `/v2`:
Opper's `{"detail": "..."}`, 422 for validation).

Validation errors add `field`; unhandled exceptions become a generic 500 carrying the request id that
the log line also carries. Handlers raise domain errors (`core.errors`) and never build bodies. A
database that is away (down, refusing, not answering within the DB_* timeouts) is a 503 with
`Retry-After`, whichever route met it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from temporalio.service import RPCError, RPCStatusCode

from api.middleware import request_id_of
from core.db.availability import is_unavailable
from core.errors import EverloopError, field_in

log = structlog.get_logger("everloop.api")


def error_response(status: int, message: str, **extra: Any) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"error": message, "status": status}
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=status, media_type=MediaType.JSON)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    headers = exc.headers or {}
    if isinstance(exc, ValidationException):
        message, field = _first_problem(exc)
        response = error_response(exc.status_code, message, field=field)
    else:
        response = error_response(exc.status_code, exc.detail)
    response.headers.update(headers)
    return response


def _first_problem(exc: ValidationException) -> tuple[str, str | None]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    first = problems[0] if problems and isinstance(problems[0], dict) else {}
    message = str(first.get("message") or exc.detail)
    # Litestar gives the path of the failing value as the key ("data" is the body itself); msgspec's
    # message may name a field inside it ("Object missing required field `text`").
    key = str(first.get("key") or "")
    path = "" if key == "data" else key
    named = field_in(message)
    field = (f"{path}.{named}" if path and named else named or path) or None
    text = message if field is None or field in message else f"{field}: {message}"
    return text, field


def _domain_error(request: Request[Any, Any, Any], exc: EverloopError) -> Response[dict[str, Any]]:
    response = error_response(exc.status_code, exc.message, field=exc.field)
    if exc.status_code == 503:  # every 503 says when to come back, whatever is unavailable
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


# PostgreSQL cannot store U+0000 in text or JSONB; msgspec accepts it in JSON strings.
_UNSTORABLE_TEXT = {"22021", "22P05"}


# Seconds a client is asked to wait after a 503 (the database, Temporal, a provider's listing): a
# restart or failover takes a few.
DATABASE_RETRY_AFTER_S = 5


def _database_error(request: Request[Any, Any, Any], exc: SQLAlchemyError) -> Response[dict[str, Any]]:
    if is_unavailable(exc):
        return _database_unavailable(request, exc)
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _UNSTORABLE_TEXT:
        return error_response(400, "text may not contain the NUL character (\\u0000)")
    if isinstance(exc, IntegrityError):
        # A concurrent change won a race (two new defaults, a delete against a new use): retryable.
        return error_response(409, "the request conflicts with a concurrent change; try again")
    return _unhandled(request, exc)


def _database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # The cause, not str(exc): that would carry the SQL of the statement.
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    log.warning(
        "database unavailable",
        request_id=request_id_of(request.scope),
        method=request.method,
        path=request.url.path,
        error=f"{type(cause).__name__}: {str(cause)[:300]}",
    )
    response = error_response(503, "the database is not available, try again shortly")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


_UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}


def _temporal_error(request: Request[Any, Any, Any], exc: RPCError) -> Response[dict[str, Any]]:
    if exc.status in _UNAVAILABLE:
        response = error_response(503, "Temporal is not answering, try again shortly")
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response
    return _unhandled(request, exc)


def _unhandled(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    request_id = request_id_of(request.scope)
    log.exception("unhandled error", request_id=request_id, method=request.method, path=request.url.path)
    return error_response(500, "Internal server error", request_id=request_id)


Handler = Callable[[Request[Any, Any, Any], Any], Response[dict[str, Any]]]


def _is_v2(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    return path == "/v2" or path.startswith("/v2/")


def _in_form_of_path(handler: Handler) -> Handler:
    """Under `/v2` an error is Opper's `{"detail": "..."}`, and a body that fails validation a 422
    (seed 000's "Common Response Patterns"); elsewhere the Everruns form above. One place for both:
    every handler's answer passes through here."""

    def handle(request: Request[Any, Any, Any], exc: Any) -> Response[dict[str, Any]]:
        response = handler(request, exc)
        if not _is_v2(request):
            return response
        body = response.content if isinstance(response.content, dict) else {}
        detail = str(body.get("error", "error"))
        status = 422 if isinstance(exc, ValidationException) else response.status_code
        return Response(
            {"detail": detail}, status_code=status, media_type=MediaType.JSON, headers=dict(response.headers)
        )

    return handle


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _in_form_of_path(_http_exception),
    EverloopError: _in_form_of_path(_domain_error),
    # DB-API errors, and the pool's wait for a connection running out
    SQLAlchemyError: _in_form_of_path(_database_error),
    RPCError: _in_form_of_path(_temporal_error),
    Exception: _in_form_of_path(_unhandled),
}
