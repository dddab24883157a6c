"""Per-agent capability configuration: validated when set, stored, shown, exported and imported."""

from __future__ import annotations

from typing import Any

import pytest

from capabilities import registry
from capabilities.base import CapabilitySpec
from tests import factories
from tests.factories import Client

FETCH_CONFIG = {
    "allowed_domains": ["Docs.Example.com", "*.python.org"],
    "blocked_domains": ["bad.example.com"],
}
NORMALISED = {"allowed_domains": ["docs.example.com", "python.org"], "blocked_domains": ["bad.example.com"]}


async def test_capabilities_show_their_config_schema(client: Client) -> None:
    fetch = (await client.get("/v1/capabilities/web_fetch")).json()
    schema = fetch["config_schema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["properties"]["allowed_domains"]["type"] == "array"
    shared = {"require_approval", "approval_timeout_s"}  # every capability's (tool approval)
    assert set(schema["properties"]) == {"allowed_domains", "blocked_domains", *shared}
    math = (await client.get("/v1/capabilities/test_math")).json()
    assert set(math["config_schema"]["properties"]) == shared
    assert math["config_schema"]["additionalProperties"] is False


async def test_put_accepts_ids_and_configured_items_and_get_shows_them(client: Client) -> None:
    agent = await factories.agent(client)
    path = f"/v1/agents/{agent['id']}/capabilities"
    put = await client.put(
        path,
        json={
            "capabilities": ["test_math", {"id": "web_fetch", "config": FETCH_CONFIG}, {"id": "current_time"}]
        },
    )
    assert put.status_code == 200, put.text
    expected = {
        "capabilities": ["test_math", "web_fetch", "current_time"],
        "capability_configs": {"web_fetch": NORMALISED},
    }
    assert put.json() == expected
    assert (await client.get(path)).json() == expected
    # The agent itself shows them as Everruns' clients read them (issue 12 changed this on purpose).
    shown = (await client.get(f"/v1/agents/{agent['id']}")).json()
    assert shown["capabilities"] == [
        {"ref": "test_math", "config": None},
        {"ref": "web_fetch", "config": NORMALISED},
        {"ref": "current_time", "config": None},
    ]

    # All defaults: nothing to keep. A bare id replaces the configuration (PUT replaces the set).
    defaults = await client.put(
        path, json={"capabilities": [{"id": "web_fetch", "config": {"blocked_domains": []}}]}
    )
    assert defaults.json() == {"capabilities": ["web_fetch"], "capability_configs": {}}
    await client.put(path, json={"capabilities": [{"id": "web_fetch", "config": FETCH_CONFIG}]})
    bare = await client.put(path, json={"capabilities": ["web_fetch"]})
    assert bare.json() == {"capabilities": ["web_fetch"], "capability_configs": {}}


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        (
            {"id": "web_fetch", "config": {"allowed_domains": "example.com"}},
            "capabilities[1].config.allowed_domains",
            "array",
        ),
        (
            {"id": "web_fetch", "config": {"blocked_domains": ["not a domain!"]}},
            "capabilities[1].config.blocked_domains",
            "not a domain",
        ),
        ({"id": "web_fetch", "config": {"colour": "red"}}, "capabilities[1].config.colour", "unknown field"),
        (
            {"id": "test_weather", "config": {"units": "kelvin"}},
            "capabilities[1].config.units",
            "unknown field",
        ),
        ({"id": "teleport", "config": {}}, "capabilities", "unknown capability"),
        ({"id": "web_fetch", "config": {}, "extra": 1}, "capabilities[1].extra", "unknown field"),
    ],
)
async def test_invalid_configs_are_400_naming_the_field(
    client: Client, item: dict[str, Any], field: str, words: str
) -> None:
    agent = await factories.agent(client, capabilities=["current_time"])
    path = f"/v1/agents/{agent['id']}/capabilities"
    response = await client.put(path, json={"capabilities": ["test_math", item]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == field
    assert words in body["error"]
    assert (await client.get(path)).json()["capabilities"] == ["current_time"]  # unchanged


async def test_create_and_patch_carry_configs(client: Client) -> None:
    created = await factories.agent(
        client, capabilities=[{"id": "web_fetch", "config": FETCH_CONFIG}, "test_math"]
    )
    # [{ref, config}] in agent responses since issue 12 (Everruns' clients read that form).
    assert created["capabilities"] == [
        {"ref": "web_fetch", "config": NORMALISED},
        {"ref": "test_math", "config": None},
    ]
    patched = await client.patch(
        f"/v1/agents/{created['id']}",
        json={"capabilities": ["test_math", {"id": "web_fetch", "config": {"blocked_domains": ["x.org"]}}]},
    )
    assert patched.status_code == 200, patched.text
    configured = {"ref": "web_fetch", "config": {"blocked_domains": ["x.org"]}}
    assert patched.json()["capabilities"][1] == configured
    untouched = await client.patch(f"/v1/agents/{created['id']}", json={"name": "Renamed"})
    assert untouched.json()["capabilities"][1] == configured
    bad = await client.post(
        "/v1/agents",
        json={"name": "x", "capabilities": [{"id": "web_fetch", "config": {"allowed_domains": [1]}}]},
    )
    assert bad.status_code == 400 and bad.json()["field"] == "capabilities[0].config.allowed_domains[0]"


async def test_two_capabilities_offering_one_tool_name_are_refused(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    math = registry.CAPABILITIES["test_math"]
    clone = CapabilitySpec(id="other_math", name="Other math", description="adds too", tools=math.tools[:1])
    monkeypatch.setitem(registry.CAPABILITIES, clone.id, clone)
    agent = await factories.agent(client, capabilities=["other_math"])
    path = f"/v1/agents/{agent['id']}/capabilities"
    response = await client.put(path, json={"capabilities": ["test_math", "other_math"]})
    assert response.status_code == 400
    assert response.json()["field"] == "capabilities"
    assert "add (test_math, other_math)" in response.json()["error"]
    create = await client.post("/v1/agents", json={"name": "x", "capabilities": ["other_math", "test_math"]})
    assert create.status_code == 400 and "add (other_math, test_math)" in create.json()["error"]


async def test_export_import_round_trip_keeps_configs_byte_for_byte(client: Client) -> None:
    original = await factories.agent(
        client,
        system_prompt="Fetch carefully.\n",
        capabilities=["test_math", {"id": "web_fetch", "config": FETCH_CONFIG}, "current_time"],
    )
    exported = await client.get(f"/v1/agents/{original['id']}/export")
    assert "allowed_domains" in exported.text
    imported = await client.post(
        "/v1/agents/import", content=exported.content, headers={"content-type": "text/markdown"}
    )
    assert imported.status_code == 201, imported.text
    copy = imported.json()
    # [{ref, config}] in agent responses since issue 12 (Everruns' clients read that form).
    assert copy["capabilities"] == [
        {"ref": "test_math", "config": None},
        {"ref": "web_fetch", "config": NORMALISED},
        {"ref": "current_time", "config": None},
    ]
    again = await client.get(f"/v1/agents/{copy['id']}/export")
    assert again.content == exported.content


async def test_import_validates_configs(client: Client) -> None:
    content = '{"name": "x", "capabilities": [{"id": "web_fetch", "config": {"allowed_domains": ["a b"]}}]}'
    response = await client.post(
        "/v1/agents/import", content=content.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "capabilities[0].config.allowed_domains"


async def test_coming_soon_capabilities_have_no_tools(client: Client) -> None:
    listed = {
        c["id"]: c for c in (await client.get("/v1/capabilities", params={"limit": 200})).json()["data"]
    }
    for capability_id in ("research",):
        assert listed[capability_id]["status"] == "coming_soon"
        assert listed[capability_id]["tool_definitions"] == []
    assert {"current_time", "web_fetch", "stateless_todo_list", "test_math", "test_weather"} <= {
        i for i, c in listed.items() if c["status"] == "available" and c["tool_definitions"]
    }
