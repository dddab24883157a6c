"""Opper's datasets under `/v2` through the `opperai` SDK and plain HTTP: a function's dataset,
entries CRUD on both the SDK's and the seed's paths, the semantic query (the simulator's lexical
embeddings), few-shot examples chosen from it for a call, and isolation between accounts."""

from __future__ import annotations

import uuid
from contextlib import _AsyncGeneratorContextManager
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from opperai import Opper, errors, models
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import secret_box
from core.db import Database
from core.db.functions import Function
from core.db.models import LlmModel, LlmProvider
from core.identity import Identity
from core.schemas.v2_functions import CallFunction
from everloop.stack import Endpoints
from services import functions, model_calls, v2_calls
from tests.api.test_auth_full import ADMIN_EMAIL, As, full_settings
from tests.api.test_v2_functions import client, opper_for, simulated_model

__all__ = ["client"]


async def test_dataset_entries_crud(client: AsyncTestClient[Litestar]) -> None:
    opper, alice = await opper_for(client)
    fn = await opper.functions.create_async(name="ds/crud", instructions="x")
    assert fn.dataset_id is not None
    dataset = str(fn.dataset_id)

    # The SDK's path (`POST /v2/datasets/{id}`) and the seed's (`.../entries`) both add.
    first = await opper.datasets.create_entry_async(
        dataset_id=dataset, input={"q": "capital of France"}, output={"a": "Paris"}, comment="geo"
    )
    assert first.input == '{"q": "capital of France"}' and first.output == '{"a": "Paris"}'  # strings
    assert first.comment == "geo" and first.expected is None
    second = await alice.post(
        f"/v2/datasets/{dataset}/entries", {"input": "hello", "output": "hi", "expected": "hey"}
    )
    assert second.status_code == 201, second.text
    assert second.json()["input"] == "hello" and second.json()["expected"] == "hey"  # a string stays itself

    listed = await opper.datasets.list_entries_async(dataset_id=dataset)
    assert listed.meta.total_count == 2 and [e.id for e in listed.data] == [first.id, second.json()["id"]]
    paged = (await alice.get(f"/v2/datasets/{dataset}/entries?offset=1&limit=1")).json()
    assert [e["input"] for e in paged["data"]] == ["hello"] and paged["meta"] == {"total_count": 2}
    got = await opper.datasets.get_entry_async(dataset_id=dataset, entry_id=first.id)
    assert got.output == '{"a": "Paris"}'

    updated = await opper.datasets.entries.update_async(
        dataset_id=dataset, entry_id=first.id, output="Paris!"
    )
    assert updated.output == "Paris!" and updated.input == '{"q": "capital of France"}'  # left out: kept
    await opper.datasets.delete_entry_async(dataset_id=dataset, entry_id=first.id)
    with pytest.raises(errors.NotFoundError):
        await opper.datasets.get_entry_async(dataset_id=dataset, entry_id=first.id)
    assert (await alice.get(f"/v2/datasets/{dataset}/entries")).json()["meta"]["total_count"] == 1
    assert (await alice.get(f"/v2/datasets/{uuid.uuid4()}/entries")).status_code == 404
    bad = await alice.post(f"/v2/datasets/{dataset}/entries", {"output": "no input"})
    assert bad.status_code == 422 and "input" in bad.json()["detail"]


async def test_another_users_dataset_is_404_and_never_listed(client: AsyncTestClient[Litestar]) -> None:
    alice, _ = await opper_for(client)
    bob, bob_http = await opper_for(client)
    fn = await alice.functions.create_async(name="ds/private", instructions="x")
    assert fn.dataset_id is not None
    ds = str(fn.dataset_id)
    entry = await alice.datasets.create_entry_async(dataset_id=ds, input="ALICE ONLY", output="x")
    for attempt in (
        bob.datasets.create_entry_async(dataset_id=ds, input="taken", output="over"),
        bob.datasets.list_entries_async(dataset_id=ds),
        bob.datasets.get_entry_async(dataset_id=ds, entry_id=entry.id),
        bob.datasets.entries.update_async(dataset_id=ds, entry_id=entry.id, output="taken"),
        bob.datasets.delete_entry_async(dataset_id=ds, entry_id=entry.id),
    ):
        with pytest.raises(errors.NotFoundError):
            await attempt
    listed = await bob_http.get(f"/v2/datasets/{ds}/entries")
    assert listed.status_code == 404 and "ALICE" not in listed.text
    assert (await alice.datasets.get_entry_async(dataset_id=ds, entry_id=entry.id)).output == "x"


class TransactionlessAccess(model_calls.ModelAccess):
    """Refuses a model call made while `session` holds a DB transaction open: a slow provider would
    keep it idle in transaction (DB_IDLE_IN_TRANSACTION_TIMEOUT ends the session, the work is lost)."""

    session: AsyncSession | None = None

    def reaching(
        self, provider: LlmProvider, model: LlmModel, extra: dict[str, Any] | None = None
    ) -> _AsyncGeneratorContextManager[tuple[dict[str, Any], str | None]]:
        assert self.session is not None and not self.session.in_transaction(), "a model call in a transaction"
        return super().reaching(provider, model, extra)


ENTRIES = [
    ("the capital city of France", "Paris"),
    ("how to bake sourdough bread at home", "flour, water, salt, time"),
    ("weather forecast for Stockholm tomorrow", "cold and dark"),
]


async def semantic_setup(client: AsyncTestClient[Litestar], simulator_url: str) -> tuple[Opper, As, str, str]:
    """The admin (who may use the loopback simulator) with an echo chat model and a lexical
    embedding model (the simulator's: shared words, near vectors), and a function whose dataset
    holds ENTRIES: (sdk, http, function id, dataset id)."""
    opper, admin = await opper_for(client, admin=True)
    model = await simulated_model(admin, simulator_url)
    provider = next(p["id"] for p in (await admin.get("/v1/llm-providers")).json() if p["name"] == "Sim")
    embedder = await admin.post(
        f"/v1/llm-providers/{provider}/models", {"model_id": "fn-embed", "kind": "embedding"}
    )
    assert embedder.status_code == 201, embedder.text
    fn = await opper.functions.create_async(
        name="geo/answer",
        instructions="Answer.",
        model=model,
        configuration=models.FunctionCallConfigurationInput(invocation_few_shot_count=1),
    )
    dataset = str(fn.dataset_id)
    for question, answer in ENTRIES:
        await opper.datasets.create_entry_async(dataset_id=dataset, input=question, output=answer)
    return opper, admin, fn.id, dataset


async def test_semantic_query_finds_the_obvious_entry(
    client: AsyncTestClient[Litestar], simulator_url: str
) -> None:
    opper, admin, _, dataset = await semantic_setup(client, simulator_url)
    # The SDK's form: query parameters on `.../entries/query`.
    (best,) = await opper.datasets.query_entries_async(
        dataset_id=dataset, query="capital of France?", limit=1
    )
    assert best.output == "Paris"
    # The seed's form: a body on `.../query`; best first, with scores.
    found = await admin.post(f"/v2/datasets/{dataset}/query", {"query": "bake bread", "top_k": 3})
    assert found.status_code == 200, found.text
    ranked = found.json()
    assert ranked[0]["output"] == "flour, water, salt, time" and len(ranked) == 3
    assert ranked[0]["score"] > ranked[1]["score"] >= ranked[2]["score"]
    # A changed input is embedded again: the query follows it.
    entries = (await opper.datasets.list_entries_async(dataset_id=dataset)).data
    weather = next(e for e in entries if e.output == "cold and dark")
    await opper.datasets.entries.update_async(
        dataset_id=dataset, entry_id=weather.id, input="bread rolls recipe"
    )
    (best,) = await opper.datasets.query_entries_async(dataset_id=dataset, query="bread rolls", limit=1)
    assert best.id == weather.id
    missing = await admin.post(f"/v2/datasets/{dataset}/entries/query", {})
    assert missing.status_code == 400 and "query" in missing.json()["detail"]


async def test_few_shot_examples_reach_the_prompt(
    client: AsyncTestClient[Litestar], simulator_url: str, db: Database, endpoints: Endpoints
) -> None:
    opper, admin, function_id, _ = await semantic_setup(client, simulator_url)
    # The SDK's configuration key made it (`invocation.few_shot.count: 1`); the seed's turns it off below.
    # The nearest entry to the input is the example chosen...
    settings = full_settings(endpoints)
    access = TransactionlessAccess(settings, secret_box(settings))
    async with db.session() as session:
        access.session = session  # the entries' and the input's embeddings: none inside a transaction
        owner = await session.scalar(select(Function.owner_id).where(Function.id == uuid.UUID(function_id)))
        assert owner is not None
        who = Identity(user_id=owner, email=ADMIN_EMAIL, role="admin", method="api_key")
        request, _ = await functions.call_request(
            session, who, access, uuid.UUID(function_id), None, CallFunction(input="France's capital city")
        )
    assert request.examples is not None and [e.output for e in request.examples] == ["Paris"]
    system = v2_calls.messages(request, structured=True)[0]["content"]
    assert "Input: the capital city of France\nOutput: Paris" in system
    # ...and it reaches the model: the same call without few-shot examples sends a shorter prompt.
    with_example = await opper.functions.call_async(function_id=function_id, input="France's capital city")
    patched = await admin.patch(f"/v2/functions/{function_id}", {"configuration": {"few_shot_count": 0}})
    assert patched.status_code == 200, patched.text
    without = await opper.functions.call_async(function_id=function_id, input="France's capital city")
    assert isinstance(with_example.usage, dict) and isinstance(without.usage, dict)
    assert with_example.usage["input_tokens"] > without.usage["input_tokens"]
