from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient


async def _spec(client: AsyncTestClient[Litestar]) -> dict[str, Any]:
    response = await client.get("/api-doc/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert isinstance(spec, dict)
    return spec


async def test_every_operation_has_an_id_a_tag_and_error_responses(
    client: AsyncTestClient[Litestar],
) -> None:
    spec = await _spec(client)
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert {path for path, _, _ in operations} >= {"/health", "/ready"}
    ids = [op.get("operationId") for _, _, op in operations]
    assert all(ids) and len(ids) == len(set(ids))
    for path, method, op in operations:
        assert op.get("tags"), f"{method} {path} has no tag"
        errors = [code for code in op["responses"] if code.startswith(("4", "5"))]
        assert errors, f"{method} {path} documents no error response"


async def test_error_responses_use_the_error_schema(client: AsyncTestClient[Litestar]) -> None:
    spec = await _spec(client)
    error = spec["paths"]["/health"]["get"]["responses"]["500"]["content"]["application/json"]["schema"]
    name = error["$ref"].rsplit("/", 1)[-1]
    assert set(spec["components"]["schemas"][name]["required"]) == {"error", "status"}


async def test_swagger_ui_and_its_assets_are_served_locally(client: AsyncTestClient[Litestar]) -> None:
    page = await client.get("/swagger-ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/api-doc/openapi.json" in page.text
    assert "http" not in page.text.split("<body>")[1]  # nothing from a CDN
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        response = await client.get(f"/swagger-ui/assets/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 1000
