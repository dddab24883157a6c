from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from core.settings import Settings
from tests.api.routes import TEST_ROUTES
from tests.apps import app_for


@pytest.fixture
async def api(settings: Settings, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = app_for(settings, extra_handlers=TEST_ROUTES, configure_logs=False)
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_default_page(api: AsyncTestClient[Litestar]) -> None:
    body = (await api.get("/v1/_test/numbers")).json()
    assert (body["total"], body["offset"], body["limit"]) == (437, 0, 50)
    assert body["data"] == list(range(50))


async def test_offset_and_limit(api: AsyncTestClient[Litestar]) -> None:
    body = (await api.get("/v1/_test/numbers", params={"offset": 430, "limit": 200})).json()
    assert body["data"] == list(range(430, 437))
    assert (body["offset"], body["limit"]) == (430, 200)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 2**31}, "offset"),
        ({"offset": 342692832475637547008}, "offset"),
        ({"limit": "x"}, "limit"),
    ],
)
async def test_out_of_range_values_are_400(
    api: AsyncTestClient[Litestar], params: dict[str, int | str], field: str
) -> None:
    response = await api.get("/v1/_test/numbers", params=params)
    assert response.status_code == 400
    assert response.json()["field"] == field
