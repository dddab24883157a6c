"""Hostile request bodies: nesting and size limits before anything decodes JSON or YAML, and an
empty body that says what is wrong. The limits are tested on their own in tests/unit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_auth_full import clear_rate_limits, full_settings, register
from tests.apps import app_for
from tests.conftest import make_settings

DEEP = "is nested deeper than 64 levels (JSON_MAX_DEPTH)"
MANY = "holds more than 100000 values in its arrays and objects (JSON_MAX_ITEMS)"
JSON = {"content-type": "application/json"}


def nested(levels: int, inner: str = "0") -> str:
    return "[" * levels + inner + "]" * levels


@pytest.fixture
async def anon(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """AUTH_MODE=full: login is the one JSON route anyone may call."""
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as client:
        yield client


@pytest.fixture
async def user(anon: AsyncTestClient[Litestar]) -> dict[str, str]:
    tokens = await register(anon)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.mark.parametrize("levels", [1_000, 100_000])
async def test_deep_nesting_is_a_400_on_login_before_any_credential(
    anon: AsyncTestClient[Litestar], levels: int
) -> None:
    for body in (nested(levels), "[" * levels, '{"email": ' + nested(levels) + "}"):
        response = await anon.post("/api/auth/login", content=body, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json() == {"error": f"the JSON body {DEEP}", "status": 400}


@pytest.mark.parametrize("levels", [1_000, 100_000])
async def test_deep_nesting_is_a_400_on_an_authenticated_create(
    anon: AsyncTestClient[Litestar], user: dict[str, str], levels: int
) -> None:
    body = '{"name": "x", "tags": ' + nested(levels, '"a"') + "}"
    # Litestar decodes `data` whatever the Content-Type says: the limit holds for every one.
    for content_type in ("application/json", "text/plain", None):
        headers = {**user, **({"content-type": content_type} if content_type else {})}
        response = await anon.post("/v1/agents", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == f"the JSON body {DEEP}"


@pytest.mark.parametrize("levels", [1_000, 100_000])
@pytest.mark.parametrize("content_type", ["application/yaml", "application/json", "text/markdown", None])
async def test_deep_nesting_is_a_400_on_an_agent_import(
    anon: AsyncTestClient[Litestar], user: dict[str, str], levels: int, content_type: str | None
) -> None:
    if content_type == "application/json":
        body = '{"name": "x", "tags": ' + nested(levels, '"a"') + "}"
    elif content_type == "text/markdown":
        body = f"---\nname: x\ntags: {nested(levels, 'a')}\n---\nBe brief."
    else:
        body = f"name: x\ntags: {nested(levels, 'a')}\n"
    headers = {**user, **({"content-type": content_type} if content_type else {})}
    response = await anon.post("/v1/agents/import", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == f"the agent file {DEEP}"


async def test_a_yaml_alias_bomb_is_a_400(anon: AsyncTestClient[Litestar], user: dict[str, str]) -> None:
    """ "Billion laughs": nine levels of nine aliases each stand for 9^9 values in a few lines."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = "\n".join(lines)
    for body in (
        f"name: x\n{bomb}\n",
        f"---\nname: x\n{bomb}\n---\nBe brief.",
        # Where it would be stored as it is: a capability's free-form config.
        f"name: x\n{bomb}\ncapabilities: [{{id: current_time, config: {{x: *a9}}}}]\n",
    ):
        response = await anon.post("/v1/agents/import", content=body, headers=user)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == f"the agent file {MANY}"


async def test_a_yaml_document_that_contains_itself_is_a_400(
    anon: AsyncTestClient[Litestar], user: dict[str, str]
) -> None:
    body = "name: x\ncapabilities: [{id: current_time, config: &c {again: *c}}]\n"
    response = await anon.post("/v1/agents/import", content=body, headers=user)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "the agent file contains itself: alias *c is inside &c"


async def test_brackets_and_commas_inside_strings_do_not_count(
    anon: AsyncTestClient[Litestar], user: dict[str, str]
) -> None:
    # Opening brackets, escaped quotes and backslashes that would end a string if misread, and
    # more commas than the value limit: all text.
    prompt = '[{"\\' * 1_000 + "," * 200_000
    response = await anon.post("/v1/agents", json={"name": "brackets", "system_prompt": prompt}, headers=user)
    assert response.status_code == 201, response.text
    assert response.json()["system_prompt"] == prompt
    # A wrong password full of brackets is just a wrong password.
    login = await anon.post("/api/auth/login", json={"email": "a@example.com", "password": "[" * 1_000})
    assert login.status_code == 401, login.text
    markdown = f"---\nname: imported\ntags: ['{'[' * 1_000}']\n---\n{prompt}"
    imported = await anon.post("/v1/agents/import", content=markdown, headers=user)
    assert imported.status_code == 201, imported.text
    assert imported.json()["tags"] == ["[" * 1_000]


async def test_a_body_at_the_limits_passes(anon: AsyncTestClient[Litestar], user: dict[str, str]) -> None:
    def provider(settings: str) -> str:
        return '{"name": "p", "provider_type": "simulator", "settings": {"x": ' + settings + "}}"

    # The body's object, `settings`, then 62 arrays: 64 levels.
    at_depth = await anon.post("/v1/llm-providers", content=provider(nested(62)), headers=user)
    assert at_depth.status_code == 201, at_depth.text
    value = at_depth.json()["settings"]["x"]
    for _ in range(62):
        (value,) = value
    assert value == 0
    over_depth = await anon.post("/v1/llm-providers", content=provider(nested(63)), headers=user)
    assert over_depth.status_code == 400 and over_depth.json()["error"] == f"the JSON body {DEEP}"
    # 3 values in the body's object, 1 in `settings`, and the list's: 100,000 in all.
    items = 100_000 - 4
    at_count = await anon.post(
        "/v1/llm-providers", content=provider(f"[{','.join(['1'] * items)}]"), headers=user
    )
    assert at_count.status_code == 201, at_count.text
    assert len(at_count.json()["settings"]["x"]) == items
    over = await anon.post(
        "/v1/llm-providers", content=provider(f"[{','.join(['1'] * (items + 1))}]"), headers=user
    )
    assert over.status_code == 400 and over.json()["error"] == f"the JSON body {MANY}"


async def test_the_highest_depth_setting_still_decodes(endpoints: Endpoints, db: Database) -> None:
    """JSON_MAX_DEPTH at its maximum stays within what the decoders can recurse through."""
    settings = make_settings(endpoints, JSON_MAX_DEPTH="256")
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as client:
        body = '{"name": "p", "provider_type": "simulator", "settings": {"x": ' + nested(254) + "}}"
        created = await client.post("/v1/llm-providers", content=body, headers=JSON)
        assert created.status_code == 201, created.text
        deeper = '{"name": "p", "provider_type": "simulator", "settings": {"x": ' + nested(255) + "}}"
        refused = await client.post("/v1/llm-providers", content=deeper, headers=JSON)
        assert refused.json()["error"] == "the JSON body is nested deeper than 256 levels (JSON_MAX_DEPTH)"
        # YAML: PyYAML's composer recurses twice a level. The file loads; its tags are not strings.
        imported = await client.post(
            "/v1/agents/import",
            content=f"name: x\ntags: {nested(255, 'a')}\n",
            headers={"content-type": "application/yaml"},
        )
        assert imported.status_code == 400 and imported.json()["field"] == "tags", imported.text


@pytest.mark.parametrize("headers", [{}, JSON, {"content-type": "text/plain"}])
async def test_an_empty_body_says_what_is_wrong(
    anon: AsyncTestClient[Litestar], user: dict[str, str], headers: dict[str, str]
) -> None:
    empty = {"error": "the request body is empty; this route expects a JSON object", "status": 400}
    for path, extra in (("/api/auth/login", {}), ("/v1/agents", user), ("/v1/llm-providers", user)):
        response = await anon.post(path, content=b"", headers={**headers, **extra})
        assert response.status_code == 400, response.text
        assert response.json() == empty
    # A route whose body is optional is not affected: refresh reads the cookie `register` set.
    refresh = await anon.post("/api/auth/refresh", content=b"", headers=headers)
    assert refresh.status_code == 200 and refresh.json()["refresh_token"], refresh.text
    # Neither is one that reads the raw body itself.
    imported = await anon.post("/v1/agents/import", content=b"", headers={**headers, **user})
    error = imported.json()["error"]
    assert imported.status_code == 400 and ("agent file" in error or "YAML document" in error), error
