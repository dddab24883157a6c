"""The list convention of every list endpoint: `offset`/`limit` in, `{data, total, offset, limit}` out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

import msgspec
from litestar.params import QueryParameter

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_OFFSET = 2**31 - 1  # past any real list; larger numbers would overflow PostgreSQL's BIGINT


class PageParams(msgspec.Struct, kw_only=True, frozen=True):
    offset: int = 0
    limit: int = DEFAULT_LIMIT


class Page(msgspec.Struct, Generic[T], kw_only=True):
    data: Sequence[T]
    total: int
    offset: int
    limit: int


def provide_page_params(
    offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description="How many items to skip.")] = 0,
    limit: Annotated[
        int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"Items per page (at most {MAX_LIMIT}).")
    ] = DEFAULT_LIMIT,
) -> PageParams:
    return PageParams(offset=offset, limit=limit)


def page(items: Sequence[T], total: int, params: PageParams) -> Page[T]:
    return Page(data=items, total=total, offset=params.offset, limit=params.limit)
