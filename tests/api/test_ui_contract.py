"""Everruns' web UI (early 2026, `apps/ui/src` in Everruns' repository) against a running Everloop,
page by page, through plain HTTP: each request the UI makes, answered in the shape its code reads.
The browser is played by a client that signs in with cookies only (as the UI's `/api` proxy hands
them on); each assertion names the UI file that dereferences the field. The UI reads list answers
three ways, so each is checked as it reads it: a bare array (`apiClient<T[]>`: providers, models,
API keys), `{data: [...]}` (`ListResponse`: agents, sessions, messages, capabilities, users,
files), or one object."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from core.db import Database
from everloop.stack import Endpoints
from tests.clients.conftest import Everloop, serving
from tests.sse import SSE

TURN_ENDS = {"turn.completed", "turn.failed", "turn.cancelled"}
WAIT_S = 30.0
# Where the UI is served: the browser sends it as `Origin` on every change, and a cookie-signed
# change must come from an allowed origin (docs/auth.md), so the deployment lists it in CORS_ORIGINS.
UI_ORIGIN = "http://ui.example.test:3000"
SCRIPT = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "The sum is 5."]


@dataclass
class UI:
    stack: Everloop
    browser: httpx.AsyncClient  # the admin, signed in with cookies only, as the UI's proxy forwards them

    async def simulate(self, settings: dict[str, Any]) -> None:
        patched = await self.browser.patch(
            f"/v1/llm-models/{self.stack.model_id}", json={"settings": settings}
        )
        assert patched.status_code == 200, patched.text

    async def agent(self, **fields: Any) -> dict[str, Any]:
        body = {"name": f"ui-{uuid.uuid4().hex[:8]}", "system_prompt": "Be brief.", **fields}
        created = await self.browser.post("/v1/agents", json=body)
        assert created.status_code == 201, created.text
        agent: dict[str, Any] = created.json()
        return agent


@pytest.fixture
async def ui(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> AsyncIterator[UI]:
    async with (
        serving(endpoints, db, temporal_client, simulator_url, task_queue, CORS_ORIGINS=UI_ORIGIN) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=30, headers={"Origin": UI_ORIGIN}) as browser,
    ):
        signed_in = await browser.post(
            "/v1/auth/login", json={"email": stack.email, "password": stack.password}
        )
        assert signed_in.status_code == 200, signed_in.text
        assert "access_token" in browser.cookies
        yield UI(stack, browser)


def _is_date(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= 19 and value[4] == "-"


def _text(content: list[dict[str, Any]]) -> str:
    # hooks/use-sse-events.ts (extractTextContent): the `text` of the `text` parts, joined.
    return "".join(p.get("text") or "" for p in content if p.get("type") == "text")


async def _frames_until(sse: SSE, done: set[str], timeout: float = WAIT_S) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        while True:
            frame = await sse.event(timeout)
            if frame.event in {None, "connected"} or frame.data is None:
                continue
            body = frame.json()
            # The EventSource listener is registered per event name; the data is the event itself.
            assert body["type"] == frame.event
            seen.append(body)
            if frame.event in done:
                return

    await asyncio.wait_for(read(), timeout)
    return seen


# -- sign in, auth config, me ---------------------------------------------------------------------


async def test_sign_in_auth_config_and_me(ui: UI) -> None:
    anon = httpx.AsyncClient(base_url=ui.stack.url, timeout=30)
    async with anon:
        # lib/api/auth.ts getAuthConfig; types/auth-types.ts AuthConfigResponse: the login page
        # branches on `mode`, shows the password form on `password_auth_enabled`, the sign-up link
        # on `signup_enabled`, and maps `oauth_providers` to buttons.
        config = (await anon.get("/v1/auth/config")).json()
        assert config["mode"] in {"none", "admin", "full"}
        assert isinstance(config["password_auth_enabled"], bool) and config["password_auth_enabled"]
        assert isinstance(config["signup_enabled"], bool)
        assert isinstance(config["oauth_providers"], list)
        # Not signed in: `me` is a 401 (hooks/use-auth.ts useCurrentUser: retry false, then login).
        assert (await anon.get("/v1/auth/me")).status_code == 401

    # lib/api/auth.ts login → TokenResponse (access_token, token_type, expires_in); the cookies
    # carry the session afterwards (lib/api/client.ts: credentials "include", no header).
    me = (await ui.browser.get("/v1/auth/me")).json()
    # types/auth-types.ts UserInfoResponse: the user menu shows `name`/`email`, the avatar falls
    # back to initials of `name` (name.split(" ")), admin-only items test `roles.includes("admin")`.
    assert isinstance(me["id"], str) and me["email"] == ui.stack.email
    assert isinstance(me["name"], str) and me["name"]
    assert me["roles"] == ["admin"]
    assert "avatar_url" in me and me["avatar_url"] is None

    # lib/api/client.ts tryRefreshToken: POST /api/v1/auth/refresh with no body, the cookie only;
    # the proxy hands it on to /v1/auth/refresh. `response.ok` is all it reads.
    refresh_paths = {c.path for c in ui.browser.cookies.jar if c.name == "refresh_token"}
    assert "/api/v1/auth" in refresh_paths and "/v1/auth" in refresh_paths
    refreshed = await ui.browser.post("/v1/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert (await ui.browser.get("/v1/auth/me")).status_code == 200


async def test_register_takes_a_name_when_signup_is_open(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> None:
    async with (
        serving(
            endpoints,
            db,
            temporal_client,
            simulator_url,
            task_queue,
            AUTH_REGISTRATION_OPEN="true",
            CORS_ORIGINS=UI_ORIGIN,
        ) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=30, headers={"Origin": UI_ORIGIN}) as browser,
    ):
        assert (await browser.get("/v1/auth/config")).json()["signup_enabled"] is True
        # types/auth-types.ts RegisterRequest: {email, password, name}.
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "password": "long enough", "name": "Ada Lovelace"}
        registered = await browser.post("/v1/auth/register", json=body)
        assert registered.status_code == 201, registered.text
        assert registered.json()["access_token"]
        me = (await browser.get("/v1/auth/me")).json()
        assert (me["name"], me["roles"]) == ("Ada Lovelace", ["user"])


# -- API keys page --------------------------------------------------------------------------------


async def test_api_keys_page(ui: UI) -> None:
    # lib/api/auth.ts createApiKey → ApiKeyResponse; settings/api-keys/page.tsx shows `result.key`.
    created = await ui.browser.post("/v1/auth/api-keys", json={"name": "laptop", "expires_in_days": 30})
    assert created.status_code == 201, created.text
    assert created.json()["key"].startswith("evr_")
    # lib/api/auth.ts listApiKeys: `api.get<ApiKeyListItem[]>` → a bare array; ApiKeyRow reads
    # `name`, `key_prefix`, `last_used_at` and `expires_at` (both through `new Date`), `id`.
    listed = (await ui.browser.get("/v1/auth/api-keys")).json()
    assert isinstance(listed, list) and len(listed) == 2  # the fixture's key, and this one
    laptop = next(k for k in listed if k["name"] == "laptop")
    assert laptop["key_prefix"].startswith("evr_") and laptop["scopes"] == ["*"]
    assert _is_date(laptop["expires_at"]) and "last_used_at" in laptop
    # useDeleteApiKey: DELETE /v1/auth/api-keys/{id}; the client takes 204 or an empty body.
    deleted = await ui.browser.delete(f"/v1/auth/api-keys/{laptop['id']}")
    assert deleted.status_code in {200, 204}
    assert [k["name"] for k in (await ui.browser.get("/v1/auth/api-keys")).json()] == ["sdk"]


# -- members page ---------------------------------------------------------------------------------


async def test_members_page(ui: UI) -> None:
    # lib/api/users.ts listUsers: `response.data.data` of GET /v1/users[?search=]; the members
    # page (settings/members/page.tsx, the /v1/users version) reads `users.length`, and per user
    # `roles.includes("admin")`, `name` (getInitials splits it), `email`, `avatar_url`,
    # `auth_provider` (a label) and `created_at` (new Date).
    listed = (await ui.browser.get("/v1/users")).json()
    assert isinstance(listed["data"], list) and listed["data"]
    for user in listed["data"]:
        assert isinstance(user["roles"], list) and isinstance(user["name"], str) and user["name"]
        assert isinstance(user["email"], str) and _is_date(user["created_at"])
        assert "avatar_url" in user and "auth_provider" in user
    found = (await ui.browser.get("/v1/users", params={"search": "root"})).json()["data"]
    assert [u["email"] for u in found] == [ui.stack.email]


# -- LLM providers and models pages ---------------------------------------------------------------


async def test_providers_and_models_pages(ui: UI) -> None:
    # lib/api/llm-providers.ts getLlmProviders: `apiClient<LlmProvider[]>("/v1/llm-providers")`,
    # the raw body; settings/providers/page.tsx reads `providers.length` and `providers.map`, and
    # ProviderCard `name`, `provider_type`, `status`, `base_url`, `api_key_set`.
    providers = (await ui.browser.get("/v1/llm-providers")).json()
    assert isinstance(providers, list) and len(providers) == 1
    [sim] = providers
    assert (sim["name"], sim["provider_type"], sim["status"]) == ("Sim", "simulator", "active")
    assert isinstance(sim["api_key_set"], bool) and "base_url" in sim

    # AddProviderDialog: {name, provider_type, api_key} (base_url left out when empty).
    body = {"name": "OpenAI", "provider_type": "openai", "api_key": "sk-test"}
    created = await ui.browser.post("/v1/llm-providers", json=body)
    assert created.status_code == 201, created.text
    openai = created.json()
    assert openai["api_key_set"] is True and openai["status"] == "active"
    # AddModelDialog: {model_id, display_name, is_default} → LlmModel.
    model_body = {"model_id": "gpt-4o-mini", "display_name": "GPT-4o mini", "is_default": False}
    made = await ui.browser.post(f"/v1/llm-providers/{openai['id']}/models", json=model_body)
    assert made.status_code == 201, made.text

    # getLlmModels: `apiClient<LlmModelWithProvider[]>("/v1/llm-models")`, a bare array; ModelRow
    # reads `display_name`, `model_id`, `provider_name`, `provider_type`, `status`, `profile`
    # (then `profile.family`, `reasoning`, `tool_call`, `attachment`, `limits.context/output`,
    # `cost.input/output`, `modalities.input.join`), and without a profile `capabilities.length`.
    models = (await ui.browser.get("/v1/llm-models")).json()
    assert isinstance(models, list) and len(models) == 2
    by_id = {m["model_id"]: m for m in models}
    for model in models:
        assert isinstance(model["capabilities"], list) and model["status"] in {"active", "inactive"}
        assert isinstance(model["display_name"], str) and isinstance(model["provider_name"], str)
    assert by_id["sim-1"]["profile"] is None
    profile = by_id["gpt-4o-mini"]["profile"]
    assert profile["family"] == "gpt-4o-mini" and profile["tool_call"] is True
    assert isinstance(profile["limits"]["context"], int) and isinstance(profile["limits"]["output"], int)
    assert profile["cost"]["input"] > 0 and profile["cost"]["output"] > 0
    assert isinstance(profile["modalities"]["input"], list)
    assert by_id["gpt-4o-mini"]["provider_type"] == "openai"
    # getLlmProviderModels and getLlmModel (the provider detail page and the model picker).
    own = (await ui.browser.get(f"/v1/llm-providers/{openai['id']}/models")).json()
    assert [m["model_id"] for m in own] == ["gpt-4o-mini"]
    one = (await ui.browser.get(f"/v1/llm-models/{by_id['sim-1']['id']}")).json()
    assert (one["provider_name"], one["provider_type"]) == ("Sim", "simulator")
    # SetApiKeyDialog: PATCH {api_key}; delete buttons: DELETE answers 204 or an empty body.
    patched = await ui.browser.patch(f"/v1/llm-providers/{openai['id']}", json={"api_key": "sk-other"})
    assert patched.status_code == 200 and patched.json()["api_key_set"] is True
    assert (await ui.browser.delete(f"/v1/llm-models/{by_id['gpt-4o-mini']['id']}")).status_code in {200, 204}
    assert (await ui.browser.delete(f"/v1/llm-providers/{openai['id']}")).status_code in {200, 204}


# -- agents: list, create, edit (capabilities, model), export, import --------------------------------


async def test_agents_list_create_edit_export_import(ui: UI) -> None:
    # lib/api/capabilities.ts: `response.data.data`; the capability selector reads `id`, `name`,
    # `description`, `status` and `category`.
    capabilities = (await ui.browser.get("/v1/capabilities")).json()["data"]
    math = next(c for c in capabilities if c["id"] == "test_math")
    assert isinstance(math["name"], str) and isinstance(math["description"], str) and "status" in math

    # agents/new/page.tsx: {name, display_name, description, system_prompt, default_model_id,
    # tags, capabilities: AgentCapabilityConfig[] ({ref, config})}.
    agent = await ui.agent(
        display_name="UI agent",
        description="made by the UI",
        default_model_id=ui.stack.model_id,
        tags=["ui"],
        capabilities=[{"ref": "test_math", "config": {}}],
    )
    # types Agent: the cards and the detail page read `display_name ?? name`, `description`,
    # `tags.map`, `capabilities.map(c => c.ref)`, `status`, `default_model_id`, `harness_id`,
    # `created_at`/`updated_at` (new Date).
    assert agent["display_name"] == "UI agent" and agent["tags"] == ["ui"]
    assert [c["ref"] for c in agent["capabilities"]] == ["test_math"]
    assert agent["status"] == "active" and agent["default_model_id"] == ui.stack.model_id
    assert agent["harness_id"].startswith("harness_")
    assert _is_date(agent["created_at"]) and _is_date(agent["updated_at"])

    # agents/page.tsx (lib/api/crud.ts list): `response.data.data`.
    listed = (await ui.browser.get("/v1/agents")).json()
    assert agent["id"] in [a["id"] for a in listed["data"]]

    # agents/[agentId]/edit/page.tsx: PATCH with the whole form, capabilities as {ref, config}.
    edit = {
        "name": agent["name"],
        "display_name": "UI agent, edited",
        "description": "edited",
        "system_prompt": "Be briefer.",
        "default_model_id": ui.stack.model_id,
        "tags": ["ui", "edited"],
        "capabilities": [
            {"ref": "test_math", "config": {"require_approval": ["add"]}},
            {"ref": "current_time"},
        ],
    }
    patched = await ui.browser.patch(f"/v1/agents/{agent['id']}", json=edit)
    assert patched.status_code == 200, patched.text
    edited = patched.json()
    assert [c["ref"] for c in edited["capabilities"]] == ["test_math", "current_time"]
    assert edited["capabilities"][0]["config"] == {"require_approval": ["add"]}
    assert (await ui.browser.get(f"/v1/agents/{agent['id']}")).json()["display_name"] == "UI agent, edited"

    # lib/api/agents.ts exportAgent: `fetch(...).text()` of GET /api/v1/agents/{id}/export;
    # importAgent: POST the Markdown with Content-Type text/markdown, `response.json()` → Agent.
    exported = await ui.browser.get(f"/v1/agents/{agent['id']}/export")
    assert exported.status_code == 200 and exported.text.startswith("---")
    imported = await ui.browser.post(
        "/v1/agents/import", content=exported.text, headers={"content-type": "text/markdown"}
    )
    assert imported.status_code == 201, imported.text
    copy = imported.json()
    assert copy["id"] != agent["id"] and copy["system_prompt"] == "Be briefer."
    assert [c["ref"] for c in copy["capabilities"]] == ["test_math", "current_time"]


# -- sessions: list, new session, chat (reply, tool calls, approvals, cancel) ----------------------


async def test_new_session_and_chat_with_a_tool_call(ui: UI) -> None:
    await ui.simulate({"mode": "script", "script": SCRIPT})
    agent = await ui.agent(default_model_id=ui.stack.model_id, capabilities=[{"ref": "test_math"}])
    # "New session": the nested form (lib/api/sessions.ts, early 2026) and the flat one (later).
    nested = await ui.browser.post(f"/v1/agents/{agent['id']}/sessions", json={"title": "Chat"})
    assert nested.status_code == 201, nested.text
    session = nested.json()
    # types Session: the header and list read `title`, `status`, `model_id` (the model badge),
    # `agent_id`, `created_at`, `started_at`/`finished_at` (null before the first turn).
    assert session["model_id"] == ui.stack.model_id and session["agent_id"] == agent["id"]
    assert session["status"] == "started"
    assert session["started_at"] is None and session["finished_at"] is None
    flat = await ui.browser.post("/v1/sessions", json={"agent_id": agent["id"], "title": "Flat"})
    assert flat.status_code == 201 and flat.json()["model_id"] == ui.stack.model_id
    # Sessions lists: `response.data.data` (nested per agent; flat with `agent_id` and `search`).
    mine = (await ui.browser.get(f"/v1/agents/{agent['id']}/sessions")).json()["data"]
    assert {s["id"] for s in mine} == {session["id"], flat.json()["id"]}
    searched = (
        await ui.browser.get("/v1/sessions", params={"agent_id": agent["id"], "search": "fla"})
    ).json()
    assert [s["title"] for s in searched["data"]] == ["Flat"]

    base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
    # hooks/use-sse-events.ts: EventSource on `.../sse` (the cookies only), a listener per type.
    async with ui.browser.stream("GET", f"{base}/sse") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        sse = SSE(stream)
        assert (await sse.event()).event == "connected"
        # lib/api/messages.ts sendUserMessage: {message: {role: "user", content: [{type, text}]}}.
        sent = await ui.browser.post(
            f"{base}/messages",
            json={"message": {"role": "user", "content": [{"type": "text", "text": "2+3?"}]}},
        )
        assert sent.status_code == 201, sent.text
        # createMessage → Message: the optimistic bubble is replaced by `id`, `role`, `content`.
        posted = sent.json()
        assert posted["role"] == "user" and _text(posted["content"]) == "2+3?"
        frames = await _frames_until(sse, TURN_ENDS)

    by_type: dict[str, list[dict[str, Any]]] = {}
    for frame in frames:
        by_type.setdefault(frame["type"], []).append(frame)
        # SSEEvent: {id, type, ts, context: {turn_id, input_message_id...}, data}; the session's
        # id is `session_id` beside them (the hook reads it from neither: it knows the session).
        assert isinstance(frame["id"], str) and _is_date(frame["ts"])
        assert frame["session_id"] == session["id"] and isinstance(frame["context"], dict)
        assert isinstance(frame["data"], dict)
    assert frames[-1]["type"] == "turn.completed"
    # "message.user": data.message_id and data.content (text parts) make the user bubble.
    [user] = by_type["message.user"]
    assert _text(user["data"]["message"]["content"]) == "2+3?"
    # "tool.call_started": data.tool_call {id, name, arguments} opens a tool card.
    [started] = by_type["tool.call_started"]
    call = started["data"]["tool_call"]
    assert (call["name"], call["arguments"]) == ("add", {"a": 2, "b": 3}) and isinstance(call["id"], str)
    # "tool.call_completed": matched by data.tool_call_id; `error` absent or null on success; the
    # card shows `result` as text parts holding the JSON.
    [completed] = by_type["tool.call_completed"]
    assert completed["data"]["tool_call_id"] == call["id"] and not completed["data"].get("error")
    [part] = completed["data"]["result"]
    assert part["type"] == "text" and json.loads(part["text"]) == {"result": 5}
    # The reply: streamed deltas, then "message.agent" with the final text.
    assert "".join(d["data"]["delta"] for d in by_type.get("output.message.delta", []))
    agent_message = by_type["message.agent"][-1]["data"]["message"]
    assert _text(agent_message["content"]) == "The sum is 5."

    # The transcript after a reload (lib/api/messages.ts listMessages: `response.data.data`):
    # roles user / agent / tool_result, tool calls as `tool_call` parts, results as text parts.
    messages = (await ui.browser.get(f"{base}/messages")).json()["data"]
    assert [m["role"] for m in messages] == ["user", "agent", "tool_result", "agent"]
    [tool_call] = [p for p in messages[1]["content"] if p["type"] == "tool_call"]
    assert (tool_call["id"], tool_call["name"]) == (call["id"], "add")
    [result] = messages[2]["content"]
    assert result["type"] == "tool_result" and result["tool_call_id"] == call["id"]
    assert json.loads(result["result"][0]["text"]) == {"result": 5}
    assert _text(messages[3]["content"]) == "The sum is 5."
    # The session header after the turn: idle, with its times.
    after = (await ui.browser.get(f"/v1/sessions/{session['id']}")).json()
    assert after["status"] == "idle" and _is_date(after["started_at"]) and _is_date(after["finished_at"])
    # The events page (lib/api/events.ts listEvents: `response.data.data`).
    listed = (await ui.browser.get(f"{base}/events")).json()["data"]
    assert "turn.completed" in [e["type"] for e in listed]


async def test_chat_approval_and_cancel(ui: UI) -> None:
    await ui.simulate({"mode": "script", "script": SCRIPT})
    gated = [{"ref": "test_math", "config": {"require_approval": ["add"]}}]
    agent = await ui.agent(default_model_id=ui.stack.model_id, capabilities=gated)
    session = (await ui.browser.post("/v1/sessions", json={"agent_id": agent["id"]})).json()
    base = f"/v1/sessions/{session['id']}"
    async with ui.browser.stream("GET", f"{base}/sse") as stream:
        sse = SSE(stream)
        assert (await sse.event()).event == "connected"
        message = {"message": {"role": "user", "content": [{"type": "text", "text": "2+3?"}]}}
        assert (await ui.browser.post(f"{base}/messages", json=message)).status_code == 201
        asked = (await _frames_until(sse, {"tool.approval_requested"}))[-1]["data"]
        assert (asked["tool_name"], asked["arguments"]) == ("add", {"a": 2, "b": 3})
        decided = await ui.browser.post(
            f"{base}/tool-approvals",
            json={"decisions": [{"tool_call_id": asked["tool_call_id"], "decision": "allow"}]},
        )
        assert decided.status_code == 200, decided.text
        ended = await _frames_until(sse, TURN_ENDS)
        assert ended[-1]["type"] == "turn.completed"

    # Cancel (lib/api/sessions.ts cancelTurn: POST .../cancel, the body ignored). The stream picks
    # up after the last event seen, as lib/api/events.ts getSseUrl asks with `since_id`.
    await ui.simulate({"mode": "fixed", "text": "slow", "first_token_delay": 20})
    async with ui.browser.stream("GET", f"{base}/sse", params={"since_id": ended[-1]["id"]}) as stream:
        sse = SSE(stream)
        message = {"message": {"role": "user", "content": [{"type": "text", "text": "take your time"}]}}
        assert (await ui.browser.post(f"{base}/messages", json=message)).status_code == 201
        await _frames_until(sse, {"reason.started"})
        cancelled = await ui.browser.post(f"{base}/cancel")
        assert cancelled.status_code in {200, 202, 204}, cancelled.text
        ended = await _frames_until(sse, TURN_ENDS)
        assert ended[-1]["type"] == "turn.cancelled"
    # Nothing runs now: a second cancel is a 409 the UI shows as an error, not a crash.
    again = await ui.browser.post(f"{base}/cancel")
    assert again.status_code == 409 and isinstance(again.json()["error"], str)


# -- the session's files panel ----------------------------------------------------------------------


async def test_session_files_panel(ui: UI) -> None:
    agent = await ui.agent(
        default_model_id=ui.stack.model_id,
        capabilities=[{"ref": "session_file_system"}],
        initial_files=[{"path": "/notes/readme.md", "content": "hello", "encoding": "text"}],
    )
    session = (await ui.browser.post(f"/v1/agents/{agent['id']}/sessions", json={})).json()
    fs = f"/v1/agents/{agent['id']}/sessions/{session['id']}/fs"
    # lib/api/session-files.ts listFiles: `response.data.data`; the tree reads FileInfo's `path`,
    # `name`, `is_directory`, `size_bytes` (formatFileSize), `updated_at`.
    root = (await ui.browser.get(fs)).json()["data"]
    assert [(f["name"], f["is_directory"]) for f in root] == [("notes", True)]
    inside = (await ui.browser.get(f"{fs}/notes")).json()["data"]
    [readme] = inside
    assert (readme["path"], readme["size_bytes"], readme["is_readonly"]) == ("/notes/readme.md", 5, False)
    assert _is_date(readme["updated_at"]) and readme["session_id"] == session["id"]
    # readFile → SessionFile: the viewer shows `content` by `encoding`.
    opened = (await ui.browser.get(f"{fs}/notes/readme.md")).json()
    assert (opened["content"], opened["encoding"]) == ("hello", "text")
    # The editor saves with PUT {content, encoding}; new file with POST; delete → {deleted}.
    saved = await ui.browser.put(f"{fs}/notes/readme.md", json={"content": "hello again", "encoding": "text"})
    assert saved.status_code == 200 and saved.json()["content"] == "hello again"
    made = await ui.browser.post(f"{fs}/todo.txt", json={"content": "", "encoding": "text"})
    assert made.status_code == 201, made.text
    removed = await ui.browser.delete(f"{fs}/todo.txt")
    assert removed.status_code == 200 and removed.json() == {"deleted": True}
