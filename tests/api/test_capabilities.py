from __future__ import annotations

from tests.factories import Client


async def test_list_carries_data_and_items(client: Client) -> None:
    body = (await client.get("/v1/capabilities")).json()
    assert body["data"] == body["items"]
    assert body["total"] == len(body["data"]) >= 3
    assert {"current_time", "test_math", "test_weather"} <= {c["id"] for c in body["data"]}
    first = next(c for c in body["data"] if c["id"] == "current_time")
    assert (first["name"], first["status"], first["icon"], first["category"]) == (
        "Current Time",
        "available",
        "clock",
        "Utilities",
    )
    page = (await client.get("/v1/capabilities", params={"limit": 1, "offset": 1})).json()
    assert len(page["data"]) == 1 and page["data"][0]["id"] == body["data"][1]["id"]


async def test_detail_has_prompt_and_json_schema_tools(client: Client) -> None:
    body = (await client.get("/v1/capabilities/test_math")).json()
    assert body["system_prompt"]
    assert [t["name"] for t in body["tool_definitions"]] == ["add", "subtract", "multiply", "divide"]
    schema = body["tool_definitions"][0]["parameters"]
    assert schema["type"] == "object"
    assert schema["required"] == ["a", "b"]
    assert schema["properties"]["a"]["type"] == "number"
    assert "$ref" not in str(schema)


async def test_unknown_capability_is_404(client: Client) -> None:
    response = await client.get("/v1/capabilities/teleport")
    assert response.status_code == 404
    assert "teleport" in response.json()["error"]
