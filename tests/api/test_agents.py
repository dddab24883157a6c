from __future__ import annotations

import uuid

import pytest

from tests import factories
from tests.factories import Client


async def test_create_get_and_defaults(client: Client) -> None:
    created = await factories.agent(client, capabilities=["test_math", "current_time"], tags=["demo"])
    assert created["status"] == "active"
    # Issue 12 changed this shape on purpose: Everruns' current clients read [{ref, config}] (the
    # request may still be the seed's list of ids).
    assert created["capabilities"] == [
        {"ref": "test_math", "config": None},
        {"ref": "current_time", "config": None},
    ]
    assert created["max_iterations"] == 25
    assert uuid.UUID(created["id"]).version == 7
    fetched = (await client.get(f"/v1/agents/{created['id']}")).json()
    assert fetched == created


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 2049}, "name"),
        ({"name": "é" * 1025}, "name"),  # 2050 bytes: the limit is in bytes
        ({"name": "a", "description": "d" * (10 * 1024 + 1)}, "description"),
        ({"name": "a", "system_prompt": "p" * (1024 * 1024 + 1)}, "system_prompt"),
        ({"name": "a", "capabilities": ["nope"]}, "capabilities"),
        ({"name": "a", "capabilities": ["test_math", "test_math"]}, "capabilities"),
        ({"name": "a", "capabilities": ["test_math"] * 251}, "capabilities"),
        ({"name": "a", "default_model_id": str(uuid.uuid4())}, "default_model_id"),
        ({"name": "a", "max_iterations": 0}, "max_iterations"),
        ({"name": "a", "surprise": 1}, "surprise"),
        ({}, "name"),
    ],
)
async def test_invalid_agents_are_400_naming_the_field(
    client: Client, body: dict[str, object], field: str
) -> None:
    response = await client.post("/v1/agents", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_limits_are_inclusive(client: Client) -> None:
    response = await client.post(
        "/v1/agents",
        json={"name": "x" * 2048, "description": "d" * 10 * 1024, "system_prompt": "p" * 1024 * 1024},
    )
    assert response.status_code == 201


async def test_list_filters_and_pagination(client: Client) -> None:
    a = await factories.agent(client, name="Alpha helper", tags=["x"])
    b = await factories.agent(client, name="Beta", description="Finds HELPER things", tags=["y"])
    c = await factories.agent(client, name="Gamma", tags=["x", "y"])
    assert (await client.delete(f"/v1/agents/{c['id']}")).status_code == 204

    async def names(**params: str | int) -> list[str]:
        response = await client.get("/v1/agents", params=params)
        assert response.status_code == 200
        return [agent["name"] for agent in response.json()["data"]]

    assert await names() == ["Beta", "Alpha helper"]  # newest first, archived hidden
    assert await names(include_archived="true") == ["Gamma", "Beta", "Alpha helper"]
    assert await names(status="archived") == ["Gamma"]
    assert await names(tag="x") == ["Alpha helper"]
    assert await names(tag="x", include_archived="true") == ["Gamma", "Alpha helper"]
    assert await names(search="helper") == ["Beta", "Alpha helper"]
    assert await names(search="%") == []  # LIKE wildcards are literal
    page = (await client.get("/v1/agents", params={"limit": 1, "offset": 1})).json()
    assert (page["total"], page["offset"], page["limit"]) == (2, 1, 1)
    assert [x["id"] for x in page["data"]] == [a["id"]]
    assert b["id"] != a["id"]


async def test_patch_changes_only_what_is_sent(client: Client) -> None:
    agent = await factories.agent(client, description="keep me", tags=["t"])
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"name": "Renamed", "description": None})
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["tags"]) == ("Renamed", None, ["t"])
    assert body["updated_at"] > agent["updated_at"]
    bad = await client.patch(f"/v1/agents/{agent['id']}", json={"capabilities": ["missing"]})
    assert bad.status_code == 400 and bad.json()["field"] == "capabilities"


async def test_archive_keeps_the_agent_readable_and_refuses_new_sessions(client: Client) -> None:
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["status"] == "archived"
    refused = await client.post(f"/v1/agents/{agent['id']}/sessions", json={})
    assert refused.status_code == 409
    read = await client.get(f"/v1/agents/{agent['id']}/sessions/{session['id']}")
    assert read.status_code == 200
    post = await client.post(
        f"/v1/agents/{agent['id']}/sessions/{session['id']}/messages", json=factories.text_message("hi")
    )
    assert post.status_code == 409
    restored = await client.patch(f"/v1/agents/{agent['id']}", json={"status": "active"})
    assert restored.json()["status"] == "active"


async def test_unknown_agent_is_404(client: Client) -> None:
    missing = uuid.uuid4()
    for method, path in [
        ("GET", f"/v1/agents/{missing}"),
        ("PATCH", f"/v1/agents/{missing}"),
        ("DELETE", f"/v1/agents/{missing}"),
        ("GET", f"/v1/agents/{missing}/export"),
        ("GET", f"/v1/agents/{missing}/capabilities"),
        ("GET", "/v1/agents/not-a-uuid"),
    ]:
        response = await client.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path)
        assert response.json()["status"] == 404


async def test_agent_capabilities_keep_their_order(client: Client) -> None:
    agent = await factories.agent(client)
    path = f"/v1/agents/{agent['id']}/capabilities"
    assert (await client.get(path)).json() == {"capabilities": [], "capability_configs": {}}
    put = await client.put(path, json={"capabilities": ["test_weather", "current_time", "test_math"]})
    assert put.status_code == 200
    assert (await client.get(path)).json() == {
        "capabilities": ["test_weather", "current_time", "test_math"],
        "capability_configs": {},
    }
    unknown = await client.put(path, json={"capabilities": ["current_time", "teleport"]})
    assert unknown.status_code == 400
    assert "teleport" in unknown.json()["error"]
    assert (await client.get(path)).json()["capabilities"] == ["test_weather", "current_time", "test_math"]


async def test_export_then_import_gives_an_equal_agent(client: Client) -> None:
    provider = await factories.provider(client)
    model = await factories.model(client, provider["id"])
    original = await factories.agent(
        client,
        name="Round: trip — ünïcode",
        description="multi\nline: yes",
        system_prompt="---\nNot front matter.\n\n  Indented and trailing spaces  \n",
        tags=["a", "b"],
        capabilities=["test_math", "current_time"],
        default_model_id=model["id"],
        max_iterations=7,
    )
    exported = await client.get(f"/v1/agents/{original['id']}/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/markdown")
    assert exported.text.startswith("---\n")
    imported = await client.post(
        "/v1/agents/import", content=exported.content, headers={"content-type": "text/markdown"}
    )
    assert imported.status_code == 201, imported.text
    copy = imported.json()
    ignore = {"id", "created_at", "updated_at"}
    assert {k: v for k, v in copy.items() if k not in ignore} == {
        k: v for k, v in original.items() if k not in ignore
    }
    assert copy["id"] != original["id"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ('{"name": "From JSON", "capabilities": ["test_math"], "system_prompt": "hi"}', "application/json"),
        ("name: From YAML\ncapabilities: [test_math]\nsystem_prompt: hi\n", "application/yaml"),
        ("name: Sniffed YAML\nsystem_prompt: hi\n", None),
        ("---\nname: From MD\ncapabilities: [test_math]\n---\nhi", None),
    ],
)
async def test_import_reads_json_yaml_and_markdown(
    client: Client, content: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/agents/import", content=content.encode(), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["system_prompt"] == "hi"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("---\nname: x\nno closing line", "body"),
        ("[1, 2]", "body"),
        ("name: [unclosed", "body"),
        ('{"name": "x", "capabilities": ["nope"]}', "capabilities"),
        ('{"name": "x", "unexpected": 1}', "unexpected"),
        ('{"description": "no name"}', "name"),
    ],
)
async def test_bad_imports_are_400(client: Client, content: str, field: str) -> None:
    response = await client.post("/v1/agents/import", content=content.encode())
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_import_refuses_non_utf8(client: Client) -> None:
    response = await client.post("/v1/agents/import", content=b"\xff\xfe\x00bad")
    assert response.status_code == 400
