"""PostgreSQL away: stopped (refusing) or frozen (accepting, answering nothing). Every route that needs
it answers 503 with Retry-After within the DB_* time limits, an open SSE stream waits the outage out
and misses nothing, the app works again without a restart, and a POST given up on mid-transaction
is never stored."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from temporalio.client import Client as TemporalClient
from temporalio.service import RPCError, RPCStatusCode

from api.errors import DATABASE_RETRY_AFTER_S
from core import bus
from core.db import Database
from core.settings import Settings
from everloop.stack import Endpoints
from services import event_stream
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.outage import OwnPostgres, own_postgres
from tests.servers import Server, running
from tests.sse import open_sse, store, store_and_publish

# Short limits, so that a frozen server costs each request about a second.
CONNECT_S = POOL_S = STATEMENT_S = 1.0
# The worst a request may wait: a pooled connection (DB_POOL_TIMEOUT), then a statement that is never
# answered (DB_STATEMENT_TIMEOUT and the client's 1 s of grace), plus room for a busy test machine.
BOUND_S = POOL_S + STATEMENT_S + 1.0 + 1.5
SSE = {"Accept": "text/event-stream"}
UNAVAILABLE = {"error": "the database is not available, try again shortly", "status": 503}


@pytest.fixture(autouse=True)
def quick_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    # A live stream reads PostgreSQL when a keep-alive is due: the outage is noticed within 0.3 s.
    monkeypatch.setattr(event_stream, "KEEPALIVE_S", 0.3)
    monkeypatch.setattr(event_stream, "DB_RETRY_FIRST_S", 0.1)
    monkeypatch.setattr(event_stream, "DB_RETRY_MAX_S", 0.3)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[OwnPostgres]:
    with own_postgres(tmp_path) as server:
        yield server


def outage_settings(endpoints: Endpoints, pg: OwnPostgres, task_queue: str, **env: str) -> Settings:
    limits = {
        "DB_CONNECT_TIMEOUT": str(CONNECT_S),
        "DB_POOL_TIMEOUT": str(POOL_S),
        "DB_STATEMENT_TIMEOUT": str(STATEMENT_S),
    }
    return make_settings(endpoints, DATABASE_URL=pg.url, TEMPORAL_TASK_QUEUE=task_queue, **{**limits, **env})


@pytest.fixture
async def pg_db(pg: OwnPostgres) -> AsyncIterator[Database]:
    """The test's own access to its PostgreSQL (the app has its own)."""
    database = Database(pg.url, pool_size=2)
    yield database
    await database.dispose()


@pytest.fixture
async def server(endpoints: Endpoints, pg: OwnPostgres, task_queue: str) -> AsyncIterator[Server]:
    app = app_for(outage_settings(endpoints, pg, task_queue), configure_logs=False)
    async with running(app) as server:
        yield server


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
async def redis_client(endpoints: Endpoints) -> AsyncIterator[redis.Redis]:
    client = bus.connect(endpoints.redis_url)
    yield client
    await client.aclose()


async def new_session(http: httpx.AsyncClient) -> tuple[uuid.UUID, str]:
    """A session; returns its id and path."""
    agent = await factories.agent(http)
    session = await factories.session(http, agent["id"])
    return uuid.UUID(session["id"]), f"/v1/agents/{agent['id']}/sessions/{session['id']}"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(DATABASE_RETRY_AFTER_S)
    assert response.json() == UNAVAILABLE


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_while_postgres_is_stopped_routes_answer_503_and_work_again_without_a_restart(
    pg: OwnPostgres, pg_db: Database, server: Server, http: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    session_id, path = await new_session(http)
    events = f"{path}/events"
    first = await store_and_publish(pg_db, redis_client, session_id)
    async with open_sse(server, events) as stream:
        assert (await stream.event()).id == str(first.id)

        await asyncio.to_thread(pg.stop)
        # The open stream stays open and says why nothing comes.
        # (Keep-alives keep coming meanwhile: each wait has an overall deadline too.)
        assert await asyncio.wait_for(stream.until_comment(event_stream.DB_UNAVAILABLE), 15) == []

        assert_unavailable(await http.get("/v1/agents"))
        assert_unavailable(await http.get(f"{path}/messages"))
        assert_unavailable(await http.post(f"{path}/messages", json=factories.text_message("hello?")))
        assert_unavailable(await http.get(events, headers=SSE))  # a new stream
        assert_unavailable(await http.get(events, headers={**SSE, "Last-Event-ID": str(first.id)}))
        assert (await http.get("/ready")).status_code == 503

        await asyncio.to_thread(pg.start)
        meanwhile = [await store(pg_db, session_id) for _ in range(2)]  # committed, announced nowhere
        assert await asyncio.wait_for(stream.until_comment(event_stream.DB_AVAILABLE), 15) == []
        assert [(await stream.event()).id for _ in meanwhile] == [str(e.id) for e in meanwhile]

        # The same app, not restarted, serves again, and its live stream follows Redis again.
        assert (await http.get("/v1/agents")).status_code == 200
        posted = await http.post(f"{path}/messages", json=factories.text_message("back"))
        assert posted.status_code == 201, posted.text
        user_event = await stream.event()
        assert user_event.event == "message.user"

    # A client that reconnects with Last-Event-ID resumes right after it, with no gap.
    async with open_sse(server, events, headers={"Last-Event-ID": str(first.id)}) as resumed:
        ids = [(await resumed.event()).id for _ in range(3)]
    assert ids == [*(str(e.id) for e in meanwhile), user_event.id]
    sequences = [e["sequence"] for e in (await http.get(events)).json()["data"]]
    assert sequences == [1, 2, 3, 4]


async def test_while_postgres_is_frozen_requests_answer_503_within_the_time_limits(
    pg: OwnPostgres, http: httpx.AsyncClient
) -> None:
    _, path = await new_session(http)
    pg.freeze()
    try:
        answers = [
            await timed(http.get("/v1/agents")),
            await timed(http.get(f"{path}/messages")),
            await timed(http.post(f"{path}/messages", json=factories.text_message("anyone?"))),
            await timed(http.get(f"{path}/events", headers=SSE)),
            # Several at once: each gets its own connection (or waits for one) and its own 503.
            *await asyncio.gather(*(timed(http.get(f"{path}/messages")) for _ in range(4))),
        ]
    finally:
        pg.thaw()
    for response, took in answers:
        assert_unavailable(response)
        assert took < BOUND_S, f"{response.request.url} took {took:.1f} s"
    listing = await http.get(f"{path}/messages")
    assert (listing.status_code, listing.json()["data"]) == (200, [])


async def _backend_waiting_on_a_lock(pg: OwnPostgres) -> tuple[int, str]:
    """The pid and query of the one backend that waits for a lock (polled, with a deadline)."""
    conn = await asyncpg.connect(pg.dsn, timeout=10)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = await conn.fetchrow(
                "SELECT pid, query FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if row is not None:
                return int(row["pid"]), str(row["query"])
            await asyncio.sleep(0.02)
        raise AssertionError("no request came to wait for the lock")
    finally:
        await conn.close()


async def _gone(pg: OwnPostgres, pid: int) -> None:
    conn = await asyncpg.connect(pg.dsn, timeout=10)
    try:
        deadline = time.monotonic() + 10
        while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            assert time.monotonic() < deadline, f"backend {pid} is still there"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_a_post_given_up_on_while_postgres_is_frozen_is_never_stored(
    endpoints: Endpoints, pg: OwnPostgres, task_queue: str, temporal_client: TemporalClient
) -> None:
    # PostgreSQL's own statement_timeout must not end the lock wait before the freeze: that would
    # be the live server's clean cancel, not the hung server this is about.
    statement_s = 3.0
    app = app_for(
        outage_settings(endpoints, pg, task_queue, DB_STATEMENT_TIMEOUT=str(statement_s)),
        configure_logs=False,
    )
    async with running(app) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        await _give_up_a_post_while_frozen(pg, server, http, temporal_client, statement_s)


async def _give_up_a_post_while_frozen(
    pg: OwnPostgres,
    server: Server,
    http: httpx.AsyncClient,
    temporal_client: TemporalClient,
    statement_s: float,
) -> None:
    session_id, path = await new_session(http)
    # Holds the POST inside its transaction: the message is inserted, its event waits for this lock.
    blocker = await asyncpg.connect(pg.dsn, timeout=10)
    await blocker.execute("BEGIN; LOCK TABLE events IN SHARE MODE")
    request_id = uuid.uuid4().hex
    post = asyncio.create_task(
        http.post(
            f"{path}/messages",
            json=factories.text_message("are you there?"),
            headers={"X-Request-ID": request_id, "Idempotency-Key": request_id},
        )
    )
    pid, query = await _backend_waiting_on_a_lock(pg)
    assert query.startswith("INSERT INTO events"), query  # after the message's own INSERT

    pg.freeze()
    frozen_at = time.monotonic()
    try:
        post.cancel()  # the client gives up and closes its connection
        with pytest.raises(asyncio.CancelledError):
            await post
        # The server's handler gives up too, within the statement limit, and drops its connection.
        bound = statement_s + 1.0 + 1.5
        await server.finished(request_id, timeout=bound)
        assert time.monotonic() - frozen_at < bound
    finally:
        pg.thaw()
    await blocker.execute("ROLLBACK")
    await blocker.close()
    # The backend that held the transaction ends without a COMMIT: it never got one.
    await _gone(pg, pid)

    conn = await asyncpg.connect(pg.dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE session_id = $1", session_id) == 0
        assert await conn.fetchval("SELECT count(*) FROM events WHERE session_id = $1", session_id) == 0
    finally:
        await conn.close()
    # Nothing stored, so nothing for the sweeper to hand on, and the API started no workflow.
    with pytest.raises(RPCError) as described:
        await temporal_client.get_workflow_handle(f"session-{session_id}").describe()
    assert described.value.status == RPCStatusCode.NOT_FOUND
    # The client's retry with the same Idempotency-Key is the one stored.
    retried = await http.post(
        f"{path}/messages",
        json=factories.text_message("are you there?"),
        headers={"Idempotency-Key": request_id},
    )
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers


async def test_a_credential_check_without_postgres_is_503_not_401(
    endpoints: Endpoints, pg: OwnPostgres, task_queue: str
) -> None:
    settings = outage_settings(
        endpoints,
        pg,
        task_queue,
        AUTH_MODE="admin",
        ADMIN_EMAIL="admin@example.com",
        ADMIN_PASSWORD="correct horse battery",
        AUTH_JWT_SECRET="s" * 32,
    )
    app = app_for(settings, configure_logs=False)
    async with running(app) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        login = await http.post(
            "/api/auth/login", json={"email": "admin@example.com", "password": "correct horse battery"}
        )
        assert login.status_code == 200, login.text
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert (await http.get("/v1/agents", headers=bearer)).status_code == 200

        await asyncio.to_thread(pg.stop)
        assert_unavailable(await http.get("/v1/agents", headers=bearer))
        assert_unavailable(await http.get("/api/auth/me", headers=bearer))
        await asyncio.to_thread(pg.start)
        assert (await http.get("/v1/agents", headers=bearer)).status_code == 200


async def test_an_api_started_without_postgres_makes_its_account_on_the_first_request(
    endpoints: Endpoints, pg: OwnPostgres, task_queue: str
) -> None:
    # AUTH_MODE=none's built-in admin owns every agent: the start-up makes it, and a start-up that
    # met no PostgreSQL left it missing, so every agent made later failed (reported as "the agent
    # id None is taken", seen under load in CI). Now the first request after makes it.
    await asyncio.to_thread(pg.stop)
    app = app_for(outage_settings(endpoints, pg, task_queue), configure_logs=False)
    async with running(app) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert_unavailable(await http.get("/v1/agents"))
        await asyncio.to_thread(pg.start)
        made = await http.post("/v1/agents", json={"name": "after the outage"})
        assert made.status_code == 201, made.text
        assert [a["name"] for a in (await http.get("/v1/agents")).json()["data"]] == ["after the outage"]
