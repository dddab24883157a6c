from __future__ import annotations

import asyncio
import uuid

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text

from core.db import Database
from core.db.models import LlmModel
from everloop.stack import Endpoints
from services import llm
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.factories import Client

SECRET = "sk-test-very-secret-0123456789"


async def test_provider_key_is_write_only_and_encrypted_at_rest(client: Client, db: Database) -> None:
    created = await factories.provider(
        client, name="OpenAI", provider_type="openai", api_key=SECRET, base_url="https://gw.example.com/v1"
    )
    assert created["api_key_set"] is True
    assert "api_key" not in created and SECRET not in str(created)
    for response in [
        await client.get(f"/v1/llm-providers/{created['id']}"),
        await client.get("/v1/llm-providers"),
    ]:
        assert SECRET not in response.text
        assert "api_key_encrypted" not in response.text
    async with db.engine.connect() as conn:
        raw = (await conn.execute(text("SELECT * FROM llm_providers"))).all()
    dump = repr(raw).encode() + b"".join(bytes(r.api_key_encrypted) for r in raw)
    assert SECRET.encode() not in dump
    assert SECRET[-12:].encode() not in dump


async def test_provider_key_can_be_replaced_and_removed(client: Client) -> None:
    created = await factories.provider(client, provider_type="anthropic")
    assert created["api_key_set"] is False
    path = f"/v1/llm-providers/{created['id']}"
    assert (await client.patch(path, json={"api_key": SECRET})).json()["api_key_set"] is True
    renamed = (await client.patch(path, json={"name": "Claude"})).json()
    assert renamed["api_key_set"] is True and renamed["name"] == "Claude"
    assert (await client.patch(path, json={"api_key": None})).json()["api_key_set"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "provider_type": "cohere"}, "provider_type"),
        ({"name": "", "provider_type": "openai"}, "name"),
        ({"name": "x", "provider_type": "openai", "base_url": "ftp://x"}, "base_url"),
        ({"name": "x", "provider_type": "openai", "api_key": ""}, "api_key"),
        ({"name": "x", "provider_type": "openai", "api_key_set": True}, "api_key_set"),
    ],
)
async def test_invalid_providers_are_400(client: Client, body: dict[str, object], field: str) -> None:
    response = await client.post("/v1/llm-providers", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field


async def test_every_provider_type_and_base_url_override(client: Client) -> None:
    for kind in ("openai", "anthropic", "azure_openai", "openai_compatible", "simulator"):
        created = await factories.provider(client, provider_type=kind, base_url="http://localhost:11434/v1")
        assert (created["provider_type"], created["base_url"]) == (kind, "http://localhost:11434/v1")
    listed = await client.get("/v1/llm-providers")
    assert len(listed.json()) == 5 and listed.headers["X-Total-Count"] == "5"


async def test_without_a_master_key_storing_a_key_is_503(endpoints: Endpoints, db: Database) -> None:
    app = app_for(make_settings(endpoints, SECRETS_ENCRYPTION_KEY=""), configure_logs=False)
    async with AsyncTestClient(app=app) as keyless:
        refused = await keyless.post(
            "/v1/llm-providers", json={"name": "x", "provider_type": "openai", "api_key": SECRET}
        )
        assert refused.status_code == 503
        assert "SECRETS_ENCRYPTION_KEY" in refused.json()["error"]
        keyless_provider = await keyless.post(
            "/v1/llm-providers", json={"name": "x", "provider_type": "simulator"}
        )
        assert keyless_provider.status_code == 201


async def test_models_crud_and_listing_with_provider(client: Client) -> None:
    provider = await factories.provider(client)
    other = await factories.provider(client, name="Other")
    model = await factories.model(
        client, provider["id"], capabilities=["chat", "tools"], settings={"reply": "hi"}
    )
    await factories.model(client, other["id"], model_id="other-1")
    assert model["display_name"] == "sim-1"  # defaults to the model id
    assert model["provider"] == {"id": provider["id"], "name": "Sim", "provider_type": "simulator"}
    # Issue 12: these two lists answer a bare array (Everruns' form; its UI crashes on the
    # {data} envelope they had), the count in X-Total-Count.
    listed = (await client.get(f"/v1/llm-providers/{provider['id']}/models")).json()
    assert [m["id"] for m in listed] == [model["id"]]
    everything = await client.get("/v1/llm-models")
    assert len(everything.json()) == 2 and everything.headers["x-total-count"] == "2"
    assert {m["provider"]["name"] for m in everything.json()} == {"Sim", "Other"}
    patched = await client.patch(f"/v1/llm-models/{model['id']}", json={"display_name": "Simulator One"})
    assert patched.json()["display_name"] == "Simulator One"
    assert (await client.delete(f"/v1/llm-models/{model['id']}")).status_code == 204
    assert (await client.get(f"/v1/llm-models/{model['id']}")).status_code == 404
    assert (await client.get(f"/v1/llm-providers/{uuid.uuid4()}/models")).status_code == 404
    assert (
        await client.post(f"/v1/llm-providers/{uuid.uuid4()}/models", json={"model_id": "x"})
    ).status_code == 404


async def test_exactly_one_default_model(client: Client, db: Database) -> None:
    provider = await factories.provider(client)
    first = await factories.model(client, provider["id"], model_id="a", is_default=True)
    second = await factories.model(client, provider["id"], model_id="b", is_default=True)
    assert (await client.get(f"/v1/llm-models/{first['id']}")).json()["is_default"] is False
    third = await factories.model(client, provider["id"], model_id="c")
    await client.patch(f"/v1/llm-models/{third['id']}", json={"is_default": True})

    async def defaults() -> list[str]:
        async with db.session() as s:
            rows = (await s.execute(select(LlmModel.model_id).where(LlmModel.is_default))).scalars().all()
        return list(rows)

    assert await defaults() == ["c"]
    # Racing "make me default" calls still leave exactly one default.
    results = await asyncio.gather(
        *(
            client.patch(f"/v1/llm-models/{m['id']}", json={"is_default": True})
            for m in (first, second, third)
        )
    )
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert len(await defaults()) == 1


async def test_deleting_a_provider_whose_models_are_in_use_is_409_naming_them(client: Client) -> None:
    provider = await factories.provider(client)
    model = await factories.model(client, provider["id"])
    agent = await factories.agent(client, name="Uses it", default_model_id=model["id"])
    refused = await client.delete(f"/v1/llm-providers/{provider['id']}")
    assert refused.status_code == 409
    assert "Uses it" in refused.json()["error"]
    assert (await client.delete(f"/v1/llm-models/{model['id']}")).status_code == 409
    await client.patch(f"/v1/agents/{agent['id']}", json={"default_model_id": None})
    session = await factories.session(client, agent["id"], model_id=model["id"])
    refused = await client.delete(f"/v1/llm-providers/{provider['id']}")
    assert refused.status_code == 409 and session["id"] in refused.json()["error"]
    await client.patch(f"/v1/agents/{agent['id']}/sessions/{session['id']}", json={"model_id": None})
    assert (await client.delete(f"/v1/llm-providers/{provider['id']}")).status_code == 204
    assert (await client.get(f"/v1/llm-models/{model['id']}")).status_code == 404


async def test_unknown_provider_is_404(client: Client) -> None:
    missing = uuid.uuid4()
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(
            method, f"/v1/llm-providers/{missing}", json={} if method == "PATCH" else None
        )
        assert response.status_code == 404


class TestModelResolution:
    """The order: message controls -> session -> agent -> the default model."""

    async def _models(self, client: Client) -> list[uuid.UUID]:
        provider = await factories.provider(client)
        ids = []
        for name in ("message", "session", "agent", "default"):
            created = await factories.model(
                client, provider["id"], model_id=name, is_default=name == "default"
            )
            ids.append(uuid.UUID(created["id"]))
        return ids

    async def test_each_level_wins_over_the_next(self, client: Client, db: Database) -> None:
        message, session, agent, default = await self._models(client)
        cases = [
            ((message, session, agent), "message"),
            ((None, session, agent), "session"),
            ((None, None, agent), "agent"),
            ((None, None, None), "default"),
        ]
        async with db.session() as s:
            for (m, se, a), expected in cases:
                chosen = await llm.resolve_model(s, message_model_id=m, session_model_id=se, agent_model_id=a)
                assert chosen.model_id == expected
        assert default

    async def test_no_model_anywhere_is_a_clear_error(self, db: Database) -> None:
        from core.errors import NotFound

        async with db.session() as s:
            with pytest.raises(NotFound, match="no model is the default"):
                await llm.resolve_model(s, message_model_id=None, session_model_id=None, agent_model_id=None)
            with pytest.raises(NotFound, match="session's model_id"):
                await llm.resolve_model(
                    s, message_model_id=None, session_model_id=uuid.uuid4(), agent_model_id=None
                )


async def test_moving_a_stored_key_to_another_host_needs_the_key_again(client: Client) -> None:
    created = await factories.provider(client, provider_type="openai", api_key=SECRET)
    path = f"/v1/llm-providers/{created['id']}"
    refused = await client.patch(path, json={"base_url": "https://attacker.example/v1"})
    assert refused.status_code == 400 and refused.json()["field"] == "api_key"
    moved = await client.patch(path, json={"base_url": "https://gw.example/v1", "api_key": "sk-new"})
    assert moved.status_code == 200 and moved.json()["api_key_set"] is True
    dropped = await client.patch(path, json={"base_url": "https://other.example/v1", "api_key": None})
    assert dropped.json()["api_key_set"] is False
