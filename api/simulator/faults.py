"""OpenAI-shaped error responses, and the injected failures that produce them."""

from __future__ import annotations

import math
from collections import OrderedDict

from litestar import MediaType, Response

from api.simulator.config import SimulatorError
from api.simulator.schemas import OpenAIError, OpenAIErrorDetail

# (type, code, default message) as OpenAI sends them. litellm picks its exception class from the status
# and from phrases in the body: only the 429 message may say "rate limit", or it becomes a RateLimitError.
_INJECTED: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Simulated bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Simulated authentication failure: invalid API key."),
    404: ("invalid_request_error", "model_not_found", "Simulated error: the model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Simulated rate limit reached, please retry later."),
    500: ("server_error", None, "Simulated server error."),
    503: ("server_error", "service_unavailable", "Simulated outage: the service is unavailable."),
}


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[OpenAIError]:
    kind = type or ("invalid_request_error" if status < 500 else "server_error")
    body = OpenAIError(error=OpenAIErrorDetail(message=message, type=kind, param=param, code=code))
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def injected_response(error: SimulatorError) -> Response[OpenAIError]:
    assert error.status != "timeout"
    kind, code, default = _INJECTED[error.status]
    headers = None
    if error.status == 429:
        # The OpenAI SDK prefers the millisecond header; Retry-After itself is whole seconds.
        headers = {
            "Retry-After": str(math.ceil(error.retry_after)),
            "retry-after-ms": str(round(error.retry_after * 1000)),
        }
    return error_response(error.status, error.message or default, type=kind, code=code, headers=headers)


class AttemptCounter:
    """How many requests each conversation has made, for "fail the first N". In memory and bounded,
    so per process: a simulator behind several workers counts per worker."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._counts: OrderedDict[str, int] = OrderedDict()

    def next(self, key: str) -> int:
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        if len(self._counts) > self._limit:
            self._counts.popitem(last=False)
        return count


_attempts = AttemptCounter()


def due_failure(error: SimulatorError | None, conversation: str) -> SimulatorError | None:
    """The failure this request must suffer, if any."""
    if error is None:
        return None
    if error.times is None or _attempts.next(conversation) <= error.times:
        return error
    return None
