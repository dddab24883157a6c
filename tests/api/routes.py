"""Routes that exist only in tests, to exercise the error mapping and the list convention."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api.pagination import Page, PageParams, page
from core.errors import Conflict, InvalidInput


class Item(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    count: int


@get("/v1/_test/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@get("/v1/_test/conflict", sync_to_thread=False)
def conflict() -> None:
    raise Conflict("agent is archived")


@get("/v1/_test/invalid", sync_to_thread=False)
def invalid() -> None:
    raise InvalidInput("too long", field="name")


@post("/v1/_test/items", sync_to_thread=False)
def create_item(data: JSONBody[Item]) -> Item:
    return data


@post("/v1/_test/upload")
async def upload(request: Request[Any, Any, Any]) -> dict[str, int]:
    return {"size": len(await request.body())}


@get("/v1/_test/numbers", sync_to_thread=False)
def numbers(page_params: NamedDependency[PageParams]) -> Page[int]:
    everything = list(range(437))
    return page(everything[page_params.offset : page_params.offset + page_params.limit], 437, page_params)


TEST_ROUTES = [boom, conflict, invalid, create_item, upload, numbers]
