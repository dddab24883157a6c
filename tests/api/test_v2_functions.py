"""Opper's managed functions under `/v2`, driven through the `opperai` SDK 1.7.2 (its async methods
over the app in process) and plain HTTP: CRUD, names with `/`, revisions made by changes, soft
deletes, and isolation between accounts."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from opperai import Opper, errors, models

from core.db import Database
from everloop.stack import Endpoints
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

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


async def opper_for(client: AsyncTestClient[Litestar], *, admin: bool = False) -> tuple[Opper, As]:
    """A new user's SDK (or the admin's: who may point a provider at the loopback simulator),
    holding one of the user's API keys, and the same user over plain HTTP."""
    user = As(client, await login(client, ADMIN_EMAIL, ADMIN_PASSWORD) if admin else await register(client))
    key = await user.post("/api/auth/api-keys", {"name": "sdk"})
    assert key.status_code == 201, key.text
    sdk = Opper(http_bearer=key.json()["key"], server_url=f"{client.base_url}/v2", async_client=client)
    return sdk, user


SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}}


async def test_functions_crud_by_name_revisions_and_soft_delete(client: AsyncTestClient[Litestar]) -> None:
    opper, alice = await opper_for(client)
    made = await opper.functions.create_async(
        name="support/triage.v1",
        instructions="Sort the ticket.",
        description="first",
        output_schema=SCHEMA,
        model="sim/sim-1",
        configuration=models.FunctionCallConfigurationInput(invocation_few_shot_count=2),
    )
    assert made.name == "support/triage.v1" and made.output_schema == SCHEMA
    assert made.dataset_id and made.revision_id
    assert isinstance(made.configuration, models.FunctionCallConfigurationOutput)
    assert made.configuration.invocation_few_shot_count == 2
    first_revision = made.revision_id

    fetched = await opper.functions.get_async(function_id=made.id)
    assert (fetched.id, fetched.instructions, fetched.revision_id) == (
        made.id,
        "Sort the ticket.",
        first_revision,
    )
    by_name = await opper.functions.get_by_name_async(name="support/triage.v1")
    assert by_name.id == made.id  # the `/` in the name reaches the route whole
    with pytest.raises(errors.NotFoundError):
        await opper.functions.get_by_name_async(name="support")
    listed = await opper.functions.list_async()
    assert listed.meta.total_count == 1 and [f.id for f in listed.data] == [made.id]
    assert listed.data[0].revision_id == first_revision
    assert (await alice.get("/v2/functions?name=TRIAGE")).json()["meta"]["total_count"] == 1
    assert (await alice.get("/v2/functions?name=other")).json()["meta"]["total_count"] == 0

    # A duplicate name is a conflict; a bad name is a validation error.
    duplicate = await alice.post("/v2/functions", {"name": "support/triage.v1", "instructions": "x"})
    assert duplicate.status_code == 409 and "exists" in duplicate.json()["detail"]
    bad = await alice.post("/v2/functions", {"name": "no spaces", "instructions": "x"})
    assert bad.status_code == 422 and "detail" in bad.json()

    # A change makes a revision; the old one keeps its definition.
    changed = await opper.functions.update_async(function_id=made.id, instructions="Sort it better.")
    assert changed.instructions == "Sort it better." and changed.revision_id != first_revision
    assert changed.description == "first" and changed.output_schema == SCHEMA  # left out: kept
    unchanged = await opper.functions.update_async(function_id=made.id, instructions="Sort it better.")
    assert unchanged.revision_id == changed.revision_id  # no change, no revision
    revisions = await opper.functions.revisions.list_async(function_id=made.id)
    assert revisions.meta.total_count == 2
    assert [r.id for r in revisions.data] == [changed.revision_id, first_revision]  # newest first
    old = await opper.functions.get_by_revision_async(function_id=made.id, revision_id=first_revision)
    assert old.instructions == "Sort the ticket."
    raw = (await alice.get(f"/v2/functions/{made.id}/revisions/{first_revision}")).json()
    assert raw["number"] == 1 and raw["configuration"]["invocation.few_shot.count"] == 2
    missing = await alice.get(f"/v2/functions/{made.id}/revisions/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json() == {"detail": "revision not found"}

    # Soft delete: 204, then 404 everywhere, and the name is free again.
    await opper.functions.delete_async(function_id=made.id)
    with pytest.raises(errors.NotFoundError):
        await opper.functions.get_async(function_id=made.id)
    assert (await alice.get(f"/v2/functions/{made.id}/revisions")).status_code == 404
    assert (await alice.delete(f"/v2/functions/{made.id}")).status_code == 404
    assert (await opper.functions.list_async()).meta.total_count == 0
    again = await opper.functions.create_async(name="support/triage.v1", instructions="Anew.")
    assert again.id != made.id


async def test_another_users_functions_are_404_and_never_listed(client: AsyncTestClient[Litestar]) -> None:
    alice, _ = await opper_for(client)
    bob, bob_http = await opper_for(client)
    made = await alice.functions.create_async(name="alice/secret", instructions="ALICE ONLY")
    for attempt in (
        bob.functions.get_async(function_id=made.id),
        bob.functions.get_by_name_async(name="alice/secret"),
        bob.functions.update_async(function_id=made.id, instructions="taken"),
        bob.functions.delete_async(function_id=made.id),
        bob.functions.revisions.list_async(function_id=made.id),
    ):
        with pytest.raises(errors.NotFoundError):
            await attempt
    assert made.revision_id is not None
    with pytest.raises(errors.NotFoundError):
        await bob.functions.get_by_revision_async(function_id=made.id, revision_id=str(made.revision_id))
    assert (await bob.functions.list_async()).meta.total_count == 0
    assert "ALICE" not in (await bob_http.get("/v2/functions")).text
    # Bob may use the same name: names are per owner.
    assert (await bob.functions.create_async(name="alice/secret", instructions="mine")).id != made.id
    assert (await alice.functions.get_async(function_id=made.id)).instructions == "ALICE ONLY"


async def simulated_model(user: As, simulator_url: str) -> str:
    """A model of the user's on the simulator in echo mode (answers "Echo: <input>"): its name."""
    provider = await user.post(
        "/v1/llm-providers", {"name": "Sim", "provider_type": "simulator", "base_url": simulator_url}
    )
    assert provider.status_code == 201, provider.text
    model = await user.post(f"/v1/llm-providers/{provider.json()['id']}/models", {"model_id": "fn-echo"})
    assert model.status_code == 201, model.text
    return "fn-echo"


async def span_of(user: As, span_id: str) -> dict[str, Any]:
    found = await user.get(f"/v2/spans/{span_id}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def sse_chunks(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: ") :]) for line in body.splitlines() if line.startswith("data: ")]


async def test_calls_run_the_current_or_a_pinned_revision_and_save_examples(
    client: AsyncTestClient[Litestar], simulator_url: str
) -> None:
    opper, alice = await opper_for(client, admin=True)
    model = await simulated_model(alice, simulator_url)
    fn = await opper.functions.create_async(
        name="people/extract", instructions="Version one.", output_schema=PERSON, model=model
    )
    first_revision = str(fn.revision_id)
    answer = await opper.functions.call_async(function_id=fn.id, input="Ada, 36")
    assert answer.json_payload == {"name": "Echo: Ada, 36", "age": 0}  # the simulator's echo, schema-valid
    called = await span_of(alice, answer.span_id)
    assert called["type"] == "call" and called["name"] == "people/extract" and called["input"] == "Ada, 36"
    assert called["meta"]["instructions"] == "Version one."
    assert called["meta"]["function_id"] == fn.id and called["meta"]["function_revision_id"] == first_revision

    await opper.functions.update_async(function_id=fn.id, instructions="Version two.")
    current = await opper.functions.call_async(function_id=fn.id, input="Grace")
    assert (await span_of(alice, current.span_id))["meta"]["instructions"] == "Version two."
    pinned = await opper.functions.call_revision_async(
        function_id=fn.id, revision_id=first_revision, input="Grace"
    )
    assert (await span_of(alice, pinned.span_id))["meta"]["instructions"] == "Version one."

    # Streams: the current revision and a pinned one, each span marked with the function.
    for path, instructions in (
        (f"/v2/functions/{fn.id}/call/stream", "Version two."),
        (f"/v2/functions/{fn.id}/call/stream/{first_revision}", "Version one."),
    ):
        streamed = await alice.post(path, {"input": "Alan"})
        assert streamed.status_code == 200, streamed.text
        chunks = sse_chunks(streamed.text)
        assert chunks and all(c["chunk_type"] == "json" for c in chunks), chunks
        recorded = await span_of(alice, chunks[0]["span_id"])
        assert recorded["meta"]["instructions"] == instructions and recorded["meta"]["function_id"] == fn.id
        assert recorded["output"] == {"name": "Echo: Alan", "age": 0}

    # An unknown revision, another function's revision: 404.
    missing = await alice.post(f"/v2/functions/{fn.id}/call/{uuid.uuid4()}", {"input": "x"})
    assert missing.status_code == 404 and missing.json() == {"detail": "revision not found"}
    other = await opper.functions.create_async(name="people/other", instructions="x", model=model)
    crossed = await alice.post(f"/v2/functions/{other.id}/call/{first_revision}", {"input": "x"})
    assert crossed.status_code == 404

    # save_examples: the call's input and output into the function's dataset.
    saved = await opper.spans.save_examples_async(span_id=answer.span_id)
    assert saved.dataset_id == fn.dataset_id and saved.input == "Ada, 36"
    assert saved.output == '{"age": 0, "name": "Echo: Ada, 36"}'
    entries = await opper.datasets.list_entries_async(dataset_id=str(fn.dataset_id))
    assert [e.id for e in entries.data] == [saved.dataset_entry_id]
    # Feedback with `save_to_dataset` saves a function's call too.
    fed = await alice.post(f"/v2/spans/{current.span_id}/feedback", {"score": 1, "save_to_dataset": True})
    assert fed.status_code == 201 and fed.json()["saved_to_dataset"] is True, fed.text
    entries = await opper.datasets.list_entries_async(dataset_id=str(fn.dataset_id))
    assert [e.input for e in entries.data] == ["Ada, 36", "Grace"]
    # A plain /v2/call has no function: 400. Another user's span: 404.
    plain = await alice.post("/v2/call", {"name": "plain", "input": "x", "model": model})
    assert plain.status_code == 200, plain.text
    refused = await alice.post(f"/v2/spans/{plain.json()['span_id']}/save_examples", {})
    assert refused.status_code == 400 and "not a call of a function" in refused.json()["detail"]
    _, bob = await opper_for(client)
    assert (await bob.post(f"/v2/spans/{answer.span_id}/save_examples", {})).status_code == 404
    for tail in ("", "/stream", f"/{first_revision}", f"/stream/{first_revision}"):
        path = f"/v2/functions/{fn.id}/call{tail}"
        assert (await bob.post(path, {"input": "x"})).status_code == 404
    assert (await opper.datasets.list_entries_async(dataset_id=str(fn.dataset_id))).meta.total_count == 2

    # A deleted function is not called, and its dataset and calls' spans are gone with it.
    await opper.functions.delete_async(function_id=fn.id)
    assert (await alice.post(f"/v2/functions/{fn.id}/call", {"input": "x"})).status_code == 404
    assert (await alice.get(f"/v2/datasets/{fn.dataset_id}/entries")).status_code == 404
    assert (await alice.post(f"/v2/spans/{answer.span_id}/save_examples", {})).status_code == 404

    # Span metadata is the caller's to write: a call span naming a function_id that is no id is a
    # 400 (not a 500), one naming no function of theirs a 404; feedback on either is stored, and
    # `saved_to_dataset` says nothing was saved.
    for function_id, status in (("not-a-uuid", 400), (str(uuid.uuid4()), 404)):
        forged = await alice.post(
            "/v2/spans",
            {
                "name": "forged",
                "type": "call",
                "input": "x",
                "output": "y",
                "meta": {"function_id": function_id},
            },
        )
        assert forged.status_code == 201, forged.text
        span_id = forged.json()["id"]
        assert (await alice.post(f"/v2/spans/{span_id}/save_examples", {})).status_code == status
        fed = await alice.post(f"/v2/spans/{span_id}/feedback", {"score": 0.5, "save_to_dataset": True})
        assert fed.status_code == 201 and fed.json()["saved_to_dataset"] is False, fed.text
