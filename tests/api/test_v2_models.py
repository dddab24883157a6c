"""`/v2/models` and `/v2/models/custom` through Opper's own SDK (`opperai` 1.7) against a real server
with full auth: the list (the caller's and the deployment's models, kinds, litellm's prices), custom
models (register, read by id and name, list, change, delete; a name taken twice; a model's own key,
stored sealed and never answered), `kind` on the Everruns model routes, the default embedding model,
and isolation: another user's custom model is 404 and absent from their lists."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opperai import Opper, errors
from sqlalchemy import select

from core.db import Database
from core.db.models import LlmModel, LlmProvider
from everloop.stack import Endpoints
from services.embedding_models import default_embedding_model, embedding_model
from tests.api.test_auth_full import ADMIN_EMAIL, ADMIN_PASSWORD, clear_rate_limits, full_settings, register
from tests.apps import app_for
from tests.conftest import truncate_all
from tests.servers import Server, running


@dataclass
class User:
    key: str  # an API key: `Authorization: Bearer <key>`, as Opper's and OpenAI's clients send
    http: httpx.AsyncClient
    user_id: uuid.UUID

    def opper(self, url: str) -> Opper:
        return Opper(http_bearer=self.key, server_url=f"{url}/v2")


@dataclass
class Stack:
    server: Server
    admin: User
    alice: User
    bob: User

    @property
    def url(self) -> str:
        return self.server.url


async def made(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _user(anon: httpx.AsyncClient, url: str, token: str) -> User:
    bearer = {"Authorization": f"Bearer {token}"}
    key = await anon.post("/v1/auth/api-keys", json={"name": "sdk"}, headers=bearer)
    assert key.status_code == 201, key.text
    me = await anon.get("/v1/auth/me", headers=bearer)
    assert me.status_code == 200, me.text
    api_key = key.json()["key"]
    http = httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {api_key}"})
    return User(api_key, http, uuid.UUID(me.json()["id"]))


@asynccontextmanager
async def v2_stack(endpoints: Endpoints, **env: str) -> AsyncIterator[Stack]:
    """The API behind a real server with full auth: the admin and two users, each with an API key.
    OUTBOUND_ALLOW_LOOPBACK (test-only): the admin's providers and models' own endpoints may be
    the simulator on 127.0.0.1."""
    await clear_rate_limits(endpoints)
    settings = full_settings(endpoints, OUTBOUND_ALLOW_LOOPBACK="true", **env)
    with running(app_for(settings, configure_logs=False)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as anon:
            signed_in = await anon.post(
                "/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            assert signed_in.status_code == 200, signed_in.text
            admin = await _user(anon, server.url, signed_in.json()["access_token"])
            alice = await _user(anon, server.url, (await register(anon))["access_token"])
            bob = await _user(anon, server.url, (await register(anon))["access_token"])
            try:
                yield Stack(server, admin, alice, bob)
            finally:
                for user in (admin, alice, bob):
                    await user.http.aclose()


@pytest.fixture
async def stack(endpoints: Endpoints, db: Database) -> AsyncIterator[Stack]:
    # The deployment's models (shared providers: no owner) are every user's, so the counts below
    # hold only in an empty database, whatever ran before in this process: a test whose rows
    # outlived it (a shared embedding model once made a count 4 instead of 3) must not decide them.
    await truncate_all(db)
    async with v2_stack(endpoints) as running_stack:
        yield running_stack


async def test_models_and_custom_models_through_opper_sdk(
    stack: Stack, db: Database, simulator_url: str
) -> None:
    admin, alice, bob = stack.admin, stack.alice, stack.bob
    # The deployment's models (an admin's provider is shared) and one of Alice's own providers.
    shared = await made(admin.http, "/v1/llm-providers", {"name": "OpenAI", "provider_type": "openai"})
    await made(admin.http, f"/v1/llm-providers/{shared['id']}/models", {"model_id": "gpt-4o-mini"})
    embedder = await made(
        admin.http,
        f"/v1/llm-providers/{shared['id']}/models",
        {"model_id": "text-embedding-3-small", "kind": "embedding"},
    )
    assert embedder["kind"] == "embedding"  # `kind` on the Everruns routes, answered too
    own = await made(alice.http, "/v1/llm-providers", {"name": "Alice's sim", "provider_type": "simulator"})
    sim = await made(alice.http, f"/v1/llm-providers/{own['id']}/models", {"model_id": "alice-sim"})
    assert sim["kind"] == "chat"
    changed = await alice.http.patch(f"/v1/llm-models/{sim['id']}", json={"kind": "embedding"})
    assert changed.status_code == 200 and changed.json()["kind"] == "embedding", changed.text
    await alice.http.patch(f"/v1/llm-models/{sim['id']}", json={"kind": "chat"})

    opper_a, opper_b = alice.opper(stack.url), bob.opper(stack.url)
    listed = opper_a.language_models.list()
    by_name = {m.name: m for m in listed.data}
    assert listed.meta.total_count == 3 and set(by_name) == {
        "openai/alice-sim",
        "openai/gpt-4o-mini",
        "openai/text-embedding-3-small",
    }
    assert listed.data[0].name == "openai/alice-sim"  # the caller's own first
    mini = by_name["openai/gpt-4o-mini"]
    assert mini.hosting_provider == "openai" and mini.location == "global"
    assert mini.input_cost_per_token and mini.output_cost_per_token  # litellm's table knows it
    assert mini.input_cost_per_token < mini.output_cost_per_token
    # Everloop's own fields (the SDK's model leaves them out; the JSON has them).
    plain_list = {m["name"]: m for m in (await alice.http.get("/v2/models")).json()["data"]}
    embedding = plain_list["openai/text-embedding-3-small"]
    assert {"id", "kind", "litellm_name", "provider_id", "provider_name", "custom"} <= set(embedding)
    assert embedding["kind"] == "embedding" and embedding["input_cost_per_token"] > 0
    assert plain_list["openai/gpt-4o-mini"]["kind"] == "chat"
    assert by_name["openai/alice-sim"].input_cost_per_token is None  # a simulator has no price
    kinds = (await alice.http.get("/v2/models?kind=embedding")).json()
    assert [m["name"] for m in kinds["data"]] == ["openai/text-embedding-3-small"]
    assert opper_b.language_models.list().meta.total_count == 2  # not Alice's provider's model

    # A custom model on one of Alice's providers, with options (here the simulator's script).
    registered = opper_a.language_models.register_custom(
        name="alice/fast",
        identifier="openai/fast-sim",
        extra={"provider_id": own["id"], "mode": "fixed", "text": "fast answer"},
    )
    assert registered.name == "alice/fast" and registered.identifier == "openai/fast-sim"
    assert registered.extra == {"mode": "fixed", "text": "fast answer"}  # the binding is not an option
    again = opper_a.language_models.get_custom(model_id=registered.id)
    assert again.model_dump() == registered.model_dump()
    assert opper_a.language_models.get_custom_by_name(name="alice/fast").id == registered.id
    with pytest.raises(errors.ConflictError) as taken:
        opper_a.language_models.register_custom(name="alice/fast", identifier="openai/other")
    assert "already have a custom model named" in taken.value.data.detail
    with pytest.raises(errors.BadRequestError):  # not a provider of hers
        opper_a.language_models.register_custom(
            name="x", identifier="openai/x", extra={"provider_id": shared["id"]}
        )
    with pytest.raises(errors.BadRequestError):  # a real provider's options are call options only
        opper_a.language_models.register_custom(
            name="y", identifier="openai/y", api_key="sk-y", extra={"api_key": "elsewhere"}
        )

    # Without provider_id: Alice's newest provider of the identifier's route.
    plain = opper_a.language_models.register_custom(name="plain", identifier="openai/plain-sim", extra={})
    assert (await alice.http.get(f"/v2/models/custom/{plain.id}")).json()["provider_id"] == own["id"]
    # With its own key: a private provider made for it, the key sealed and never answered.
    keyed = opper_a.language_models.register_custom(
        name="keyed",
        identifier="anthropic/claude-3-5-haiku-latest",
        api_key="sk-alice-secret-key",
        extra={"temperature": 0.2},
    )
    keyed_row = await _row(db, keyed.id)
    assert keyed_row.provider.owner_id == alice.user_id and keyed_row.provider.provider_type == "anthropic"
    assert keyed_row.provider.api_key_encrypted and b"sk-alice" not in keyed_row.provider.api_key_encrypted
    assert keyed_row.model_id == "claude-3-5-haiku-latest"
    assert (await alice.http.get(f"/v2/models/custom/by-name/{keyed.name}")).json()["api_key_set"] is True

    custom = opper_a.language_models.list_custom()
    assert custom.meta.total_count == 3 and [m.name for m in custom.data] == ["alice/fast", "plain", "keyed"]
    raw = (await alice.http.get("/v2/models/custom")).text + (await alice.http.get("/v2/models")).text
    assert "sk-alice" not in raw
    names = {m["name"]: m for m in (await alice.http.get("/v2/models")).json()["data"]}
    assert names["alice/fast"]["custom"] is True and names["alice/fast"]["litellm_name"] == "openai/fast-sim"

    updated = opper_a.language_models.update_custom(
        model_id=registered.id, name="alice/faster", extra={"provider_id": own["id"], "mode": "echo"}
    )
    assert updated.name == "alice/faster" and updated.extra == {"mode": "echo"}
    assert updated.identifier == "openai/fast-sim"  # left out: stays
    with pytest.raises(errors.APIError) as renamed:  # the SDK maps no 409 for a PATCH: its fallback
        opper_a.language_models.update_custom(model_id=registered.id, name="plain")
    assert renamed.value.status_code == 409
    # A new key on the keyed model replaces the old one on the same private provider.
    opper_a.language_models.update_custom(model_id=keyed.id, api_key="sk-alice-second-key")
    assert (await _row(db, keyed.id)).provider_id == keyed_row.provider_id

    # Bob sees none of it, and cannot reach it by id or name.
    assert opper_b.language_models.list_custom().meta.total_count == 0
    assert all(not m["custom"] for m in (await bob.http.get("/v2/models")).json()["data"])
    assert "alice" not in (await bob.http.get("/v2/models")).text
    for call in (
        lambda: opper_b.language_models.get_custom(model_id=registered.id),
        lambda: opper_b.language_models.get_custom_by_name(name="alice/faster"),
        lambda: opper_b.language_models.update_custom(model_id=registered.id, name="bob's now"),
        lambda: opper_b.language_models.delete_custom(model_id=registered.id),
    ):
        with pytest.raises(errors.NotFoundError):
            call()
    assert opper_a.language_models.get_custom(model_id=registered.id).name == "alice/faster"
    # Bob may take the same name: names are unique per owner.
    bobs_provider = await made(bob.http, "/v1/llm-providers", {"name": "Bob's", "provider_type": "simulator"})
    opper_b.language_models.register_custom(
        name="plain", identifier="openai/b", extra={"provider_id": bobs_provider["id"]}
    )

    # The default embedding model: the caller's own newest, else the deployment's oldest.
    async with db.session() as session:
        shared_default = await default_embedding_model(session, bob.user_id)
        assert shared_default is not None and str(shared_default.id) == embedder["id"]
    mine = opper_a.language_models.register_custom(
        name="alice-embedder", identifier="openai/sim-embed", extra={"provider_id": own["id"]}
    )
    assert (await alice.http.patch(f"/v2/models/custom/{mine.id}", json={"kind": "embedding"})).json()[
        "kind"
    ] == ("embedding")
    async with db.session() as session:
        alices = await default_embedding_model(session, alice.user_id)
        assert alices is not None and str(alices.id) == mine.id
        bobs = await default_embedding_model(session, bob.user_id)
        assert bobs is not None and str(bobs.id) == embedder["id"]  # not Alice's
        named = await embedding_model(session, alice.user_id, "openai/text-embedding-3-small")
        assert str(named.id) == embedder["id"]

    # Deletes: 204, then gone; a model's own provider goes with it.
    opper_a.language_models.delete_custom(model_id=keyed.id)
    async with db.session() as session:
        assert await session.get(LlmProvider, keyed_row.provider_id) is None
    with pytest.raises(errors.NotFoundError):
        opper_a.language_models.get_custom(model_id=keyed.id)
    deleted = await alice.http.delete(f"/v2/models/custom/{plain.id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert opper_a.language_models.list_custom().meta.total_count == 2

    # Another model's private keyed provider serves no other model: not as Alice's newest provider
    # of the route (rule 3), not by extra.provider_id; each stays with its own model.
    keyed_gpt = opper_a.language_models.register_custom(
        name="keyed-gpt", identifier="openai/gpt-4o", api_key="sk-alice-gpt"
    )
    private = (await _row(db, keyed_gpt.id)).provider_id
    unkeyed = opper_a.language_models.register_custom(name="unkeyed-gpt", identifier="openai/gpt-4o")
    answered = (await alice.http.get(f"/v2/models/custom/{unkeyed.id}")).json()
    assert answered["provider_id"] == own["id"] and answered["api_key_set"] is False
    with pytest.raises(errors.BadRequestError):
        opper_a.language_models.register_custom(
            name="borrower", identifier="openai/gpt-4o", extra={"provider_id": str(private)}
        )
    # A private provider some model still uses (as rows made before this rule may) stays when its
    # own model goes: the other model is not cascaded away.
    async with db.session() as session:
        shared_row = await session.get(LlmModel, uuid.UUID(unkeyed.id))
        assert shared_row is not None
        shared_row.provider_id = private
        await session.commit()
    opper_a.language_models.delete_custom(model_id=keyed_gpt.id)
    assert (await alice.http.get(f"/v2/models/custom/{unkeyed.id}")).json()["provider_id"] == str(private)
    opper_a.language_models.delete_custom(model_id=unkeyed.id)  # its last model: the provider goes
    async with db.session() as session:
        assert await session.get(LlmProvider, private) is None

    # A model's own endpoint is checked at registration as every call checks it (the private
    # provider is its owner's, an admin's too): a private address, or an endpoint on a route the
    # pinned client cannot serve, is refused for the admin as well. (OUTBOUND_ALLOW_LOOPBACK lets
    # this stack's calls, and so its registrations, reach the simulator on 127.0.0.1.)
    for identifier, base in (("openai/x", "http://10.1.2.3/v1"), ("anthropic/x", simulator_url)):
        refused = await admin.http.post(
            "/v2/models/custom",
            json={"name": "adm/x", "identifier": identifier, "api_key": "sk-x", "extra": {"api_base": base}},
        )
        assert refused.status_code == 400 and "extra.api_base" in refused.json()["detail"], refused.text

    # A custom model's options are call defaults in /v2/call too, the request's on top: here a
    # response_format, which makes the simulator's echo answer a value of that schema instead.
    form = {
        "type": "json_schema",
        "json_schema": {
            "name": "n",
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        },
    }
    structured = await admin.http.post(
        "/v2/models/custom",
        json={
            "name": "adm/structured",
            "identifier": "openai/greeter",
            "api_key": "sk-adm",
            "extra": {"api_base": simulator_url, "response_format": form},
        },
    )
    assert structured.status_code == 200, structured.text
    by_default = await admin.http.post(
        "/v2/call", json={"name": "d", "input": "hi", "model": "adm/structured"}
    )
    assert by_default.status_code == 200 and by_default.json()["message"] == '{"n":0}', by_default.text
    overridden = await admin.http.post(
        "/v2/call",
        json={
            "name": "d",
            "input": "hi",
            "model": {"name": "adm/structured", "options": {"response_format": {"type": "text"}}},
        },
    )
    assert overridden.status_code == 200 and overridden.json()["message"] == "Echo: hi", overridden.text


async def _row(db: Database, model_pk: str) -> LlmModel:
    async with db.session() as session:
        row = (
            (await session.execute(select(LlmModel).where(LlmModel.id == uuid.UUID(model_pk))))
            .scalars()
            .one()
        )
        return row
