"""JSON request bodies: the size and nesting limits before anything decodes one, and a clear answer
for a route that expects one and got nothing."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.params import BodyKwarg

from core.errors import InvalidInput
from core.json_limits import JsonLimits, check_json


def request_class(limits: JsonLimits) -> type[Request[Any, Any, Any]]:
    """The app's Request: its `json()` (what decodes every route's `data`, whatever the
    Content-Type) checks `limits` on the body first, so a hostile body is a 400 naming the limit,
    not a RecursionError inside the decoder."""

    class LimitedRequest(Request[Any, Any, Any]):
        async def json(self) -> Any:
            check_json(await self.body(), limits)
            return await super().json()

    return LimitedRequest


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """A `before_request` hook. Litestar passes an empty body on as a missing `data` argument,
    which its validation reports as `'data'` (a KeyError's text): say what is wrong instead."""
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    if data is None or data.is_optional or data.has_default:
        return
    body = data.kwarg_definition
    if isinstance(body, BodyKwarg) and body.media_type != RequestEncodingType.JSON:
        return
    if not await request.body():
        raise InvalidInput("the request body is empty; this route expects a JSON object")
