"""Many streams' asks for their sessions' last sequences, answered together (`services.last_sequences`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.exc import DBAPIError

from core.db import Database
from core.db.availability import is_unavailable
from everloop.stack import Endpoints
from everloop.stack.process import free_port
from services.last_sequences import LastSequences
from tests import factories
from tests.factories import Client
from tests.sse import store
from tests.statements import statements_with


async def test_asks_that_meet_share_one_query(client: Client, db: Database) -> None:
    agent = await factories.agent(client)
    sessions = [uuid.UUID((await factories.session(client, agent["id"]))["id"]) for _ in range(3)]
    for _ in range(2):
        await store(db, sessions[1])
    queries = statements_with(db, "last_event_sequence")
    sequences = LastSequences(db)
    gone = uuid.uuid4()
    asks = [*(s for s in sessions for _ in range(100)), gone]
    answers = await asyncio.gather(*(sequences.get(s) for s in asks))
    assert answers == [*([0] * 100), *([2] * 100), *([0] * 100), None]
    # The first ask's query runs alone; the 300 that came meanwhile share the next one.
    assert 1 <= len(queries) <= 3, len(queries)

    await store(db, sessions[0])
    assert await sequences.get(sessions[0]) == 1  # read after the ask: never an older answer


async def test_a_database_error_reaches_every_ask(endpoints: Endpoints) -> None:
    nowhere = Database(f"postgresql://everloop@127.0.0.1:{free_port()}/everloop", pool_size=1)
    sequences = LastSequences(nowhere)
    try:
        asks = (sequences.get(uuid.uuid4()) for _ in range(5))
        results = await asyncio.gather(*asks, return_exceptions=True)
        assert all(isinstance(r, DBAPIError) and is_unavailable(r) for r in results), results
        with pytest.raises(DBAPIError):  # and the next ask tries again, not stuck behind the failure
            await sequences.get(uuid.uuid4())
    finally:
        await nowhere.dispose()


async def test_a_read_cancelled_mid_query_answers_its_askers_with_an_error(
    client: Client, db: Database
) -> None:
    agent = await factories.agent(client)
    session = uuid.UUID((await factories.session(client, agent["id"]))["id"])
    sequences = LastSequences(db)
    asks = [asyncio.create_task(sequences.get(session)) for _ in range(3)]
    while sequences._reader is None:  # the first ask starts the read
        await asyncio.sleep(0)
    reader = sequences._reader
    await asyncio.sleep(0)  # the read is in its query now
    reader.cancel()
    results = await asyncio.wait_for(asyncio.gather(*asks, return_exceptions=True), 10)
    assert all(isinstance(r, RuntimeError) for r in results), results
    assert await sequences.get(session) is not None, "the next ask starts a read of its own"
