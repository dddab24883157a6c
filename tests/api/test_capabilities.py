from __future__ import annotations

from everruns_sdk import models as sdk

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


async def test_search_filters_by_name_or_description_in_any_case(client: Client) -> None:
    async def ids(search: str, **params: int) -> list[str]:
        response = await client.get("/v1/capabilities", params={"search": search, **params})
        assert response.status_code == 200, response.text
        page = sdk.ListResponse.model_validate(response.json())
        return [sdk.CapabilityInfo.model_validate(c).id for c in page.data]

    assert await ids("MATH") == ["test_math"]  # its name
    assert await ids("arithmetic") == ["test_math"]  # its description
    assert await ids("testing the agentic loop") == ["test_math", "test_weather"]
    assert await ids("no such capability") == []
    page = (await client.get("/v1/capabilities", params={"search": "test", "limit": 1, "offset": 1})).json()
    assert (page["total"], [c["id"] for c in page["data"]]) == (2, ["test_weather"])
    assert page["items"] == page["data"]
    everything = (await client.get("/v1/capabilities", params={"search": ""})).json()
    assert everything["total"] == len((await client.get("/v1/capabilities")).json()["data"])


async def test_every_capability_reads_as_the_sdks_capability_info(client: Client) -> None:
    body = (await client.get("/v1/capabilities", params={"limit": 200})).json()
    for raw in body["data"]:
        info = sdk.CapabilityInfo.model_validate(raw)
        assert info.tool_definitions == raw["tool_definitions"]
        detail = (await client.get(f"/v1/capabilities/{info.id}")).json()
        assert sdk.CapabilityInfo.model_validate(detail) == info
