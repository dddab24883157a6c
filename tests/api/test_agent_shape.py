"""Agents and sessions in the shape Everruns' current clients read and send (issue 12): every
answer here is parsed with the official SDK's own pydantic models, and the requests are the SDK's
own request models dumped as it sends them."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from everruns_sdk import models as sdk
from sqlalchemy import func, select

from core.db import Database
from core.db.files import SessionFile
from core.db.models import Session
from core.identity import BUILTIN_ADMIN_ID
from core.schemas.agents import GENERIC_HARNESS_ID
from tests import factories
from tests.factories import Client

LOOKUP = {
    "name": "lookup_order",
    "description": "Find an order",
    "parameters": {"type": "object", "properties": {"order": {"type": "integer"}}, "required": ["order"]},
}


def sdk_body(model: Any) -> dict[str, Any]:
    """A request model as the SDK sends it."""
    body: dict[str, Any] = model.model_dump(exclude_none=True)
    return body


async def _created(client: Client, body: dict[str, Any], path: str = "/v1/agents") -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def _refused(client: Client, path: str, body: dict[str, Any], field: str, method: str = "POST") -> str:
    response = await client.request(method, path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field, response.text
    error: str = response.json()["error"]
    return error


async def test_an_agent_as_the_sdk_creates_and_reads_it(client: Client) -> None:
    request = sdk.CreateAgentRequest(
        name="support-bot",
        display_name="Support bot",
        system_prompt="Help.",
        tags=["sdk"],
        capabilities=[
            sdk.AgentCapabilityConfig(ref="current_time"),
            sdk.AgentCapabilityConfig(ref="test_math"),
        ],
        tools=[sdk.ToolDefinition(**LOOKUP)],
        initial_files=[sdk.InitialFile(path="notes/readme.md", content="# Notes\n")],
        harness_name="generic",
        parallel_tool_calls=False,
    )
    body = await _created(client, sdk_body(request))
    agent = sdk.Agent.model_validate(body)
    assert agent.harness_id == GENERIC_HARNESS_ID
    assert (agent.display_name, agent.parallel_tool_calls) == ("Support bot", False)
    # Starter files bring the capability that lets the model read them, as in Everruns.
    assert [(c.ref, c.config) for c in agent.capabilities or []] == [
        ("current_time", None),
        ("test_math", None),
        ("session_file_system", None),
    ]
    assert [(t.name, t.type, t.parameters) for t in agent.tools or []] == [
        ("lookup_order", "client_side", LOOKUP["parameters"])
    ]
    assert [(f.path, f.content, f.encoding, f.is_readonly) for f in agent.initial_files or []] == [
        ("/notes/readme.md", "# Notes\n", "text", False)
    ]
    fetched = (await client.get(f"/v1/agents/{agent.id}")).json()
    assert fetched == body
    listed = (await client.get("/v1/agents")).json()
    sdk.ListResponse.model_validate(listed)
    assert [sdk.Agent.model_validate(a).id for a in listed["data"]] == [agent.id]


async def test_capabilities_are_ref_config_objects_whatever_form_was_sent(client: Client) -> None:
    # Deliberately unlike the first shape (an id list plus capability_configs): Everruns' current
    # clients read [{ref, config}]; every request form of the seed still works.
    fetch = {"blocked_domains": ["bad.example.com"]}
    body = await _created(
        client,
        {
            "name": "mixed",
            "capabilities": [
                "test_math",
                {"id": "web_fetch", "config": fetch},
                {"ref": "current_time", "config": None},
                {"ref": "test_weather"},
            ],
        },
    )
    assert body["capabilities"] == [
        {"ref": "test_math", "config": None},
        {"ref": "web_fetch", "config": fetch},
        {"ref": "current_time", "config": None},
        {"ref": "test_weather", "config": None},
    ]
    assert "capability_configs" not in body
    # The seed's own route keeps its shape.
    shown = (await client.get(f"/v1/agents/{body['id']}/capabilities")).json()
    assert shown == {
        "capabilities": ["test_math", "web_fetch", "current_time", "test_weather"],
        "capability_configs": {"web_fetch": fetch},
    }
    patched = await client.patch(
        f"/v1/agents/{body['id']}", json={"capabilities": [{"ref": "web_fetch", "config": {}}]}
    )
    assert patched.json()["capabilities"] == [{"ref": "web_fetch", "config": None}]  # all defaults


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        ({"config": {}}, "capabilities[0]", "ref"),
        ({"ref": "test_math", "id": "test_math"}, "capabilities[0]", "not both"),
        ({"ref": "teleport"}, "capabilities", "unknown capability"),
        ({"ref": "web_fetch", "config": {"colour": 1}}, "capabilities[0].config.colour", "unknown field"),
        ({"ref": "test_math", "settings": {}}, "capabilities[0].settings", "unknown field"),
    ],
)
async def test_malformed_capability_items_are_400(
    client: Client, item: dict[str, Any], field: str, words: str
) -> None:
    error = await _refused(client, "/v1/agents", {"name": "x", "capabilities": [item]}, field)
    assert words in error


async def test_the_generic_harness_is_the_only_one(client: Client) -> None:
    for given in ({"harness_id": GENERIC_HARNESS_ID}, {"harness_name": "generic"}, {}):
        body = await _created(client, {"name": "h", **given})
        assert body["harness_id"] == GENERIC_HARNESS_ID
    await _refused(client, "/v1/agents", {"name": "h", "harness_name": "deep-research"}, "harness_name")
    other = f"harness_{uuid.uuid4().hex}"
    error = await _refused(client, "/v1/agents", {"name": "h", "harness_id": other}, "harness_id")
    assert GENERIC_HARNESS_ID in error
    both = {"name": "h", "harness_id": GENERIC_HARNESS_ID, "harness_name": "generic"}
    await _refused(client, "/v1/agents", both, "harness_id")
    agent = await factories.agent(client)
    await _refused(client, f"/v1/agents/{agent['id']}", {"harness_name": "x"}, "harness_name", "PATCH")
    session_path = f"/v1/agents/{agent['id']}/sessions"
    await _refused(client, session_path, {"harness_name": "x"}, "harness_name")
    assert (await client.post(session_path, json={"harness_name": "generic"})).status_code == 201


@pytest.mark.parametrize(
    ("tools", "field"),
    [
        ([LOOKUP, LOOKUP], "tools[1].name"),
        ([{**LOOKUP, "name": "add"}], "tools[0].name"),  # a tool of test_math
        ([{**LOOKUP, "name": "has space"}], "tools[0].name"),
        ([{**LOOKUP, "parameters": {"type": "string"}}], "tools[0].parameters"),
        ([{**LOOKUP, "parameters": {"type": "object", "properties": []}}], "tools[0].parameters"),
        ([{**LOOKUP, "parameters": {"type": "object", "required": ["missing"]}}], "tools[0].parameters"),
        ([{"name": "x", "description": "no parameters"}], "tools[0].parameters"),
        ([{**LOOKUP, "type": "builtin"}], "tools[0].type"),
        ([{**LOOKUP, "policy": "ask"}], "tools[0].policy"),
    ],
)
async def test_client_side_tools_are_checked(client: Client, tools: list[Any], field: str) -> None:
    body = {"name": "t", "capabilities": ["test_math"], "tools": tools}
    await _refused(client, "/v1/agents", body, field)


async def test_tools_and_capabilities_may_not_clash_later_either(client: Client) -> None:
    agent = await _created(client, {"name": "t", "tools": [{**LOOKUP, "name": "add"}]})
    path = f"/v1/agents/{agent['id']}"
    # test_math offers `add`: enabling it now would give the model two tools of one name.
    await _refused(client, path, {"capabilities": ["test_math"]}, "tools[0].name", "PATCH")
    await _refused(client, f"{path}/capabilities", {"capabilities": ["test_math"]}, "tools[0].name", "PUT")
    renamed = await client.patch(path, json={"tools": [LOOKUP], "capabilities": ["test_math"]})
    assert renamed.status_code == 200, renamed.text
    # A session's own tools sit beside the agent's: a name of either is taken.
    sessions = f"{path}/sessions"
    await _refused(client, sessions, {"tools": [LOOKUP]}, "tools[0].name")
    await _refused(client, sessions, {"tools": [{**LOOKUP, "name": "divide"}]}, "tools[0].name")
    mine = {**LOOKUP, "name": "ask_user", "display_name": "Ask"}
    created = await _created(client, {"tools": [mine]}, sessions)
    assert created["tools"] == [{**mine, "type": "client_side", "category": None}]


async def test_apply_with_a_client_chosen_id_creates_then_replaces(client: Client) -> None:
    chosen = sdk.generate_agent_id()
    first = sdk.CreateAgentRequest(id=chosen, name="applied", system_prompt="one", tags=["a"])
    response = await client.post("/v1/agents", json=sdk_body(first))
    assert response.status_code == 201, response.text
    created = sdk.Agent.model_validate(response.json())
    assert uuid.UUID(created.id) == uuid.UUID(chosen.removeprefix("agent_"))
    again = sdk.CreateAgentRequest(id=chosen, name="applied", system_prompt="two", description="d")
    replaced = await client.post("/v1/agents", json=sdk_body(again))
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert (body["id"], body["system_prompt"], body["description"], body["tags"]) == (
        created.id,
        "two",
        "d",
        [],  # every field is the new request's
    )
    assert body["created_at"] == created.created_at
    assert (await client.get("/v1/agents")).json()["total"] == 1
    # The plain UUID names the same agent.
    assert (await client.post("/v1/agents", json={"name": "x", "id": created.id})).status_code == 200
    for bad in ("agent_123", f"agent_{uuid.uuid4().hex.upper()}", "nope"):
        await _refused(client, "/v1/agents", {"name": "x", "id": bad}, "id")


async def test_sessions_as_the_sdk_creates_and_reads_them(client: Client) -> None:
    provider = await factories.provider(client)
    model = await factories.model(client, provider["id"])
    other = await factories.model(client, provider["id"], model_id="sim-2")
    agent = await factories.agent(client, default_model_id=model["id"])
    request = sdk.CreateSessionRequest(
        agent_id=agent["id"],
        title="SDK session",
        locale="uk-UA",
        parallel_tool_calls=True,
        tags=["t"],
        tools=[sdk.ToolDefinition(**LOOKUP)],
    )
    response = await client.post("/v1/sessions", json=sdk_body(request))
    assert response.status_code == 201, response.text
    session = sdk.Session.model_validate(response.json())
    assert (session.harness_id, session.organization_id) == (
        GENERIC_HARNESS_ID,
        f"org_{BUILTIN_ADMIN_ID.hex}",
    )
    assert (session.locale, session.parallel_tool_calls, session.title) == ("uk-UA", True, "SDK session")
    assert session.model_id == model["id"]  # the agent's default, taken at creation
    assert [t.name for t in session.tools or []] == ["lookup_order"]
    assert session.capabilities == [] and session.status == "started"
    assert session.started_at is None and session.finished_at is None
    nested = f"/v1/agents/{agent['id']}/sessions"
    explicit = await _created(client, {"model_id": other["id"]}, nested)
    assert explicit["model_id"] == other["id"]
    plain = await factories.agent(client)
    assert (await _created(client, {}, f"/v1/agents/{plain['id']}/sessions"))["model_id"] is None
    await _refused(client, nested, {"locale": "not a locale!"}, "locale")
    patched = await client.patch(f"{nested}/{session.id}", json={"locale": "en", "parallel_tool_calls": None})
    assert (patched.json()["locale"], patched.json()["parallel_tool_calls"]) == ("en", None)


async def test_session_capabilities_are_checked_and_returned(client: Client) -> None:
    agent = await factories.agent(client, capabilities=["current_time"])
    path = f"/v1/agents/{agent['id']}/sessions"
    made = await client.post(
        path, json={"capabilities": ["test_math", {"ref": "current_time", "config": {}}]}
    )
    assert made.status_code == 201, made.text
    session = sdk.Session.model_validate(made.json())
    assert [(c.ref, c.config) for c in session.capabilities or []] == [
        ("test_math", None),
        ("current_time", None),
    ]
    assert "unknown capability" in await _refused(client, path, {"capabilities": ["no_such"]}, "capabilities")
    twice = {"capabilities": ["test_math", {"ref": "test_math"}]}
    assert "twice" in await _refused(client, path, twice, "capabilities")
    bad_config = {"capabilities": [{"ref": "test_math", "config": {"require_approval": ["fly"]}}]}
    assert "require_approval" in await _refused(
        client, path, bad_config, "capabilities[0].config.require_approval"
    )


async def _tree(db: Database, session_id: str) -> dict[str, tuple[str, bytes | None, bool]]:
    async with db.session() as s:
        rows = await s.execute(select(SessionFile).where(SessionFile.session_id == uuid.UUID(session_id)))
        return {r.path: (r.kind, r.content, r.is_readonly) for r in rows.scalars()}


async def test_initial_files_are_written_into_each_new_session(client: Client, db: Database) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00"
    agent = await _created(
        client,
        {
            "name": "files",
            "initial_files": [
                {"path": "docs/guide.md", "content": "agent guide"},
                {"path": "/img/logo.png", "content": base64.b64encode(png).decode(), "encoding": "base64"},
                {"path": "rules.txt", "content": "do not edit", "is_readonly": True},
            ],
        },
    )
    base = f"/v1/agents/{agent['id']}/sessions"
    first = await _created(
        client,
        {
            "initial_files": [
                {"path": "docs/guide.md", "content": "session guide"},
                {"path": "a/b/c.txt", "content": ""},
            ]
        },
        base,
    )
    assert await _tree(db, first["id"]) == {
        "/docs": ("directory", None, False),
        "/docs/guide.md": ("file", b"session guide", False),  # the session's file wins
        "/img": ("directory", None, False),
        "/img/logo.png": ("file", png, False),
        "/rules.txt": ("file", b"do not edit", True),
        "/a": ("directory", None, False),
        "/a/b": ("directory", None, False),
        "/a/b/c.txt": ("file", b"", False),
    }
    # What Everruns' clients see of them: the session's file listing (its JSON contract).
    listing = await client.get(f"/v1/sessions/{first['id']}/fs", params={"recursive": "true"})
    assert listing.status_code == 200, listing.text
    shown = {f["path"]: sdk.FileInfo.model_validate(f) for f in listing.json()["data"]}
    assert {"/docs/guide.md", "/img/logo.png", "/rules.txt", "/a/b/c.txt"} <= set(shown)
    assert shown["/rules.txt"].is_readonly and not shown["/docs/guide.md"].is_readonly
    second = await _created(client, {}, base)
    assert (await _tree(db, second["id"]))["/docs/guide.md"] == ("file", b"agent guide", False)
    # Through the flat route too.
    third = await _created(client, {"agent_id": agent["id"]}, "/v1/sessions")
    assert "/rules.txt" in await _tree(db, third["id"])


@pytest.mark.parametrize(
    ("files", "field"),
    [
        ([{"path": "../x", "content": ""}], "initial_files[0].path"),
        ([{"path": "/", "content": ""}], "initial_files[0].path"),
        # `_` is the files API's actions (.../fs/_/stat): a file there could never be read back.
        ([{"path": "/_/a", "content": "x"}], "initial_files[0].path"),
        ([{"path": "_", "content": "x"}], "initial_files[0].path"),
        ([{"path": "a", "content": "x"}, {"path": "/a", "content": "y"}], "initial_files[1].path"),
        ([{"path": "a", "content": "x"}, {"path": "a/b", "content": "y"}], "initial_files"),
        ([{"path": "a", "content": "%%%", "encoding": "base64"}], "initial_files[0].content"),
        ([{"path": "a", "content": "x" * (1024 * 1024 + 1)}], "initial_files[0].content"),
        ([{"path": "a", "content": "x", "encoding": "hex"}], "initial_files[0].encoding"),
        ([{"path": f"f{i}", "content": ""} for i in range(101)], "initial_files"),
    ],
)
async def test_bad_initial_files_are_400(client: Client, files: list[Any], field: str) -> None:
    await _refused(client, "/v1/agents", {"name": "x", "initial_files": files}, field)


async def test_a_refused_session_file_leaves_no_session(client: Client, db: Database) -> None:
    agent = await _created(client, {"name": "x", "initial_files": [{"path": "a", "content": "x"}]})
    # Valid alone, but below the agent's file /a: refused with nothing stored.
    body = {"initial_files": [{"path": "a/b", "content": "y"}]}
    await _refused(client, f"/v1/agents/{agent['id']}/sessions", body, "initial_files")
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Session))).scalar_one() == 0
        assert (await s.execute(select(func.count()).select_from(SessionFile))).scalar_one() == 0


async def test_export_import_keeps_the_client_fields(client: Client) -> None:
    original = await _created(
        client,
        {
            "name": "round trip",
            "display_name": "Round trip",
            "capabilities": [{"ref": "web_fetch", "config": {"blocked_domains": ["x.org"]}}],
            "tools": [LOOKUP],
            "initial_files": [
                {"path": "a.txt", "content": "  spaced: yes\n---\n"},
                {"path": "b.bin", "content": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"},
            ],
            "parallel_tool_calls": True,
        },
    )
    exported = await client.get(f"/v1/agents/{original['id']}/export")
    assert "ref: web_fetch" in exported.text  # Everruns' agent-file form
    imported = await client.post(
        "/v1/agents/import", content=exported.content, headers={"content-type": "text/markdown"}
    )
    assert imported.status_code == 201, imported.text
    ignore = {"id", "created_at", "updated_at"}
    copy = imported.json()
    assert {k: v for k, v in copy.items() if k not in ignore} == {
        k: v for k, v in original.items() if k not in ignore
    }
    again = await client.get(f"/v1/agents/{copy['id']}/export")
    assert again.content == exported.content
