"""Models as Everruns' UI and SDK read them (issue 12): the two bare arrays the UI lists, the flat
provider fields, the profile from litellm's model table, and `/v1/models` for the SDK."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from everruns_sdk import Everruns
from everruns_sdk.models import ModelProfile, ModelWithProvider
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from services import model_profiles
from tests import factories
from tests.api.test_auth_full import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    As,
    clear_rate_limits,
    full_settings,
    login,
    register,
)
from tests.apps import app_for
from tests.factories import Client
from tests.servers import running


async def _openai_and_simulator(client: Client) -> dict[str, dict[str, Any]]:
    openai = await factories.provider(client, name="OpenAI", provider_type="openai")
    sim = await factories.provider(client, name="Sim")
    return {
        "known": await factories.model(
            client, openai["id"], model_id="gpt-4o-mini", display_name="GPT-4o mini"
        ),
        "unknown": await factories.model(client, openai["id"], model_id="not-a-model-litellm-knows"),
        "simulated": await factories.model(client, sim["id"], model_id="gpt-4o-mini"),
    }


async def test_both_model_lists_are_bare_arrays_with_the_provider_flat(client: Client) -> None:
    made = await _openai_and_simulator(client)
    everything = await client.get("/v1/llm-models")
    assert everything.status_code == 200
    listed = everything.json()
    assert isinstance(listed, list) and everything.headers["x-total-count"] == "3"
    by_id = {m["id"]: m for m in listed}
    assert set(by_id) == {m["id"] for m in made.values()}
    known = by_id[made["known"]["id"]]
    assert (known["provider_name"], known["provider_type"]) == ("OpenAI", "openai")
    assert (known["display_name"], known["model_id"]) == ("GPT-4o mini", "gpt-4o-mini")
    for item in listed:  # every item is what the SDK (and the UI's LlmModelWithProvider) reads
        ModelWithProvider.model_validate(item)

    provider_id = made["known"]["provider_id"]
    of_provider = await client.get(f"/v1/llm-providers/{provider_id}/models")
    assert of_provider.status_code == 200 and of_provider.headers["x-total-count"] == "2"
    assert sorted(m["id"] for m in of_provider.json()) == sorted([made["known"]["id"], made["unknown"]["id"]])
    assert all(m["provider_name"] == "OpenAI" and "profile" in m for m in of_provider.json())
    # The single-model routes carry the same fields.
    one = (await client.get(f"/v1/llm-models/{made['known']['id']}")).json()
    assert one == by_id[made["known"]["id"]]


async def test_a_known_model_has_litellm_s_profile_and_an_unknown_one_none(client: Client) -> None:
    made = await _openai_and_simulator(client)
    by_id = {m["id"]: m for m in (await client.get("/v1/llm-models")).json()}
    profile = by_id[made["known"]["id"]]["profile"]
    # litellm's table: $0.15 / $0.60 per million tokens in and out ($0.075 cached), 128k context,
    # 16k output, tools, vision and JSON schema, no reasoning.
    assert profile["cost"] == {"input": 0.15, "output": 0.6, "cache_read": 0.075}
    assert profile["limits"] == {"context": 128000, "output": 16384}
    assert (profile["name"], profile["family"]) == ("gpt-4o-mini", "gpt-4o-mini")
    assert profile["reasoning"] is False and "reasoning_effort" not in profile
    assert profile["tool_call"] and profile["structured_output"] and profile["attachment"]
    assert profile["modalities"]["input"][:2] == ["text", "image"]
    ModelProfile.model_validate(profile)
    assert by_id[made["known"]["id"]]["model_vendor"] == "openai"
    # Nothing is known of a name litellm does not have, nor of a simulated model, whatever its name.
    assert by_id[made["unknown"]["id"]]["profile"] is None
    assert by_id[made["unknown"]["id"]]["model_vendor"] is None
    simulated = by_id[made["simulated"]["id"]]
    assert simulated["profile"] is None and simulated["model_vendor"] == "llmsim"


def test_the_table_read_is_the_one_litellm_uses() -> None:
    """The profiles read litellm's bundled table as a file (the API does not import litellm): it
    must be the table litellm itself loads (LITELLM_LOCAL_MODEL_COST_MAP=True, as core sets it)."""
    import litellm  # seconds to import: only here

    read = model_profiles.table()
    assert len(read) > 1000 and set(litellm.model_cost) <= set(read)
    for key in ("gpt-4o-mini", "o3-mini", "claude-sonnet-4-5", "azure/gpt-4o"):
        assert read[key] == litellm.model_cost[key]


@pytest.mark.parametrize(
    ("provider_type", "model_id", "expected"),
    [
        # OpenAI's reasoning models: efforts, and no temperature.
        (
            "openai",
            "o3-mini",
            {"reasoning": True, "temperature": False, "efforts": ["low", "medium", "high"]},
        ),
        (
            "openai",
            "gpt-5",
            {"reasoning": True, "temperature": False, "efforts": ["minimal", "low", "medium", "high"]},
        ),
        (
            "anthropic",
            "claude-sonnet-4-5",
            {"reasoning": True, "temperature": True, "efforts": ["low", "medium", "high"]},
        ),
        ("azure_openai", "gpt-4o", {"reasoning": False, "temperature": True, "efforts": None}),
        # A gateway serving a model under its usual name.
        ("openai_compatible", "gpt-4o-mini", {"reasoning": False, "temperature": True, "efforts": None}),
        # The table's entry for an embedding model is no chat profile.
        ("openai", "text-embedding-3-small", None),
        # An Anthropic model on an OpenAI provider is not that provider's model.
        ("openai", "claude-sonnet-4-5", None),
    ],
)
async def test_profiles_by_provider_type(
    client: Client, provider_type: str, model_id: str, expected: dict[str, Any] | None
) -> None:
    provider = await factories.provider(client, provider_type=provider_type)
    model = await factories.model(client, provider["id"], model_id=model_id)
    profile = (await client.get(f"/v1/llm-models/{model['id']}")).json()["profile"]
    if expected is None:
        assert profile is None
        return
    ModelProfile.model_validate(profile)
    assert (profile["reasoning"], profile["temperature"]) == (expected["reasoning"], expected["temperature"])
    efforts = profile.get("reasoning_effort")
    if expected["efforts"] is None:
        assert efforts is None
    else:
        assert [v["value"] for v in efforts["values"]] == expected["efforts"]
        assert efforts["default"] == "medium"
        assert all(v["name"] for v in efforts["values"])


async def test_the_bare_arrays_still_take_offset_and_limit(client: Client) -> None:
    provider = await factories.provider(client)
    ids = [(await factories.model(client, provider["id"], model_id=f"m{i}"))["id"] for i in range(3)]
    for path in ("/v1/llm-models", f"/v1/llm-providers/{provider['id']}/models"):
        first = await client.get(path, params={"limit": 2})
        assert [m["id"] for m in first.json()] == ids[:2] and first.headers["x-total-count"] == "3"
        rest = await client.get(path, params={"offset": 2})
        assert [m["id"] for m in rest.json()] == ids[2:] and rest.headers["x-total-count"] == "3"
        past = await client.get(path, params={"offset": 9})
        assert past.json() == [] and past.headers["x-total-count"] == "3"
        for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"}):
            refused = await client.get(path, params=bad)
            assert refused.status_code == 400, (path, bad)
            assert refused.json()["field"] in bad
    assert (await client.get(f"/v1/llm-providers/{uuid.uuid4()}/models")).status_code == 404


async def test_v1_models_has_the_envelope_and_the_sdk_s_fields(client: Client) -> None:
    keyed = await factories.provider(
        client, name="Keyed", provider_type="openai", api_key="sk-test-0123456789"
    )
    keyless = await factories.provider(client, name="Keyless", provider_type="anthropic")
    sim = await factories.provider(client, name="Sim")
    ready = await factories.model(client, keyed["id"], model_id="gpt-4o-mini")
    off = await factories.model(client, keyed["id"], model_id="gpt-4o", status="disabled")
    no_key = await factories.model(client, keyless["id"], model_id="claude-sonnet-4-5")
    simulated = await factories.model(client, sim["id"])

    page = (await client.get("/v1/models")).json()
    assert set(page) == {"data", "total", "offset", "limit"} and page["total"] == 4
    items = {m["id"]: ModelWithProvider.model_validate(m) for m in page["data"]}
    # enabled: the model's own status; healthy: usable as far as the rows tell (active model and
    # provider, and a stored key unless the type needs none); no favourites; all added by hand.
    assert (items[ready["id"]].enabled, items[ready["id"]].healthy) == (True, True)
    assert (items[off["id"]].enabled, items[off["id"]].healthy) == (False, False)
    assert (items[no_key["id"]].enabled, items[no_key["id"]].healthy) == (True, False)
    assert (items[simulated["id"]].enabled, items[simulated["id"]].healthy) == (True, True)
    assert all(not m.is_favorite and m.source == "manual" for m in items.values())
    assert items[no_key["id"]].model_vendor == "anthropic"
    assert items[ready["id"]].profile is not None and items[ready["id"]].profile.cost is not None

    await client.patch(f"/v1/llm-providers/{keyed['id']}", json={"status": "disabled"})
    one = await client.get(f"/v1/models/{ready['id']}")
    assert one.status_code == 200
    model = ModelWithProvider.model_validate(one.json())
    assert (model.id, model.provider_name, model.provider_type) == (ready["id"], "Keyed", "openai")
    assert (model.enabled, model.healthy) == (True, False)  # its provider is off now
    assert (await client.get(f"/v1/models/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/v1/models/not-an-id")).status_code in (400, 404)
    paged = (await client.get("/v1/models", params={"offset": 1, "limit": 2})).json()
    assert (paged["total"], paged["offset"], paged["limit"], len(paged["data"])) == (4, 1, 2, 2)


# AUTH_MODE=full: whose models each list shows, and the SDK with an API key.


@pytest.fixture
async def full(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    app = app_for(full_settings(endpoints), configure_logs=False)
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def _ids(user: As, path: str) -> set[str]:
    response = await user.get(path)
    assert response.status_code == 200, (path, response.text)
    body = response.json()
    return {m["id"] for m in (body["data"] if isinstance(body, dict) else body)}


async def test_a_user_sees_shared_models_and_their_own_never_another_s(
    full: AsyncTestClient[Litestar],
) -> None:
    admin = As(full, await login(full, ADMIN_EMAIL, ADMIN_PASSWORD))
    shared_provider = (
        await admin.post("/v1/llm-providers", {"name": "Shared", "provider_type": "simulator"})
    ).json()
    shared = (await admin.post(f"/v1/llm-providers/{shared_provider['id']}/models", {"model_id": "s"})).json()
    alice, bob = As(full, await register(full)), As(full, await register(full))
    own_provider = (
        await alice.post("/v1/llm-providers", {"name": "Alice's", "provider_type": "openai"})
    ).json()
    own = (
        await alice.post(f"/v1/llm-providers/{own_provider['id']}/models", {"model_id": "gpt-4o-mini"})
    ).json()

    for path in ("/v1/llm-models", "/v1/models"):
        assert await _ids(alice, path) == {shared["id"], own["id"]}
        assert await _ids(bob, path) == {shared["id"]}
        # The admin sees shared models only: a user's are theirs alone.
        assert await _ids(admin, path) == {shared["id"]}
    assert await _ids(alice, f"/v1/llm-providers/{own_provider['id']}/models") == {own["id"]}
    assert await _ids(bob, f"/v1/llm-providers/{shared_provider['id']}/models") == {shared["id"]}
    assert (await bob.get(f"/v1/llm-providers/{own_provider['id']}/models")).status_code == 404
    for path in (f"/v1/models/{own['id']}", f"/v1/llm-models/{own['id']}"):
        assert (await bob.get(path)).status_code == 404
        assert (await alice.get(path)).json()["provider_name"] == "Alice's"
    assert (await bob.get(f"/v1/models/{shared['id']}")).json()["provider_name"] == "Shared"


async def test_the_sdk_lists_and_gets_models_with_an_api_key(endpoints: Endpoints, db: Database) -> None:
    await clear_rate_limits(endpoints)
    with running(app_for(full_settings(endpoints), configure_logs=False)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            user = As(http, await register(http))
            key = (await user.post("/v1/auth/api-keys", {"name": "sdk"})).json()["key"]
            provider = (
                await user.post("/v1/llm-providers", {"name": "OpenAI", "provider_type": "openai"})
            ).json()
            made = (
                await user.post(f"/v1/llm-providers/{provider['id']}/models", {"model_id": "gpt-4o-mini"})
            ).json()

        # What a script written for Everruns does: the key as EVERRUNS_API_KEY, the server's URL.
        async with Everruns(api_key=key, base_url=server.url) as sdk:
            models = await sdk.models.list()
            assert [m.id for m in models] == [made["id"]]
            assert isinstance(models[0], ModelWithProvider)
            assert (models[0].provider_name, models[0].provider_type) == ("OpenAI", "openai")
            assert models[0].profile is not None and models[0].profile.limits is not None
            assert models[0].profile.limits.context == 128000
            one = await sdk.models.get(made["id"])
            assert one.model_id == "gpt-4o-mini" and one.profile == models[0].profile
