"""Checks on query parameters that Litestar's conversion is too lenient for."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request

from core.errors import InvalidInput


def rfc3339_only(request: Request[Any, Any, Any], *names: str) -> None:
    """Query times as RFC 3339 text only. Litestar converts query values leniently, so it would read
    `?start_time=0.5` as a Unix timestamp: a form the OpenAPI document (`date-time`) does not allow,
    and one a client almost never means. 400 naming the parameter."""
    for name in names:
        for raw in request.query_params.getall(name, []):
            try:
                msgspec.convert(raw, datetime, strict=True)
            except msgspec.ValidationError:
                raise InvalidInput(f"{name}: not an RFC 3339 date-time: {raw!r}", field=name) from None
