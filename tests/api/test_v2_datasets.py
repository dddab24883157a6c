"""Opper's datasets under `/v2` through the `opperai` SDK and plain HTTP: a function's dataset,
entries CRUD on both the SDK's and the seed's paths, and isolation between accounts."""

from __future__ import annotations

import uuid

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from opperai import errors

from tests.api.test_v2_functions import client, opper_for

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
