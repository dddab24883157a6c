"""Rate limits per credential (issue 16), against the real Redis: headers that count down, a 429 past
the burst in each route family's error form, a `Retry-After` that holds, an SSE stream counted once,
separate buckets per key, plans and overrides an admin sets, and Redis away or hung (served, unlimited).

Most tests run at 1 request per minute with a small burst: nothing refills during a test, so every
count is exact. tests/integration/test_rate_limit_processes.py checks two API processes at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from litestar import Litestar
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from core import bus
from core.db import Database
from core.identity import Identity
from core.settings import Settings, SettingsError
from everloop.stack import Endpoints
from services.rate_limits import RateLimits
from tests.api.test_auth_full import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    bearer,
    clear_rate_limits,
    full_settings,
    register,
)
from tests.apps import app_for
from tests.outage import own_redis
from tests.servers import running
from tests.sse import open_sse, store_and_publish

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def limited(endpoints: Endpoints, per_minute: int, burst: int, **env: str) -> Settings:
    """AUTH_MODE=full with a default of `per_minute` and `burst` for every credential."""
    return full_settings(
        endpoints,
        RATE_LIMIT_PLAN="enterprise",
        RATE_LIMIT_PER_MINUTE=str(per_minute),
        RATE_LIMIT_BURST=str(burst),
        **env,
    )


async def client_of(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as client:
        yield client


@pytest.fixture
async def slow(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """1 request a minute, burst 4: nothing refills within a test."""
    await clear_rate_limits(endpoints)
    async for client in client_of(limited(endpoints, 1, 4)):
        yield client


async def api_key(client: httpx.AsyncClient, tokens: dict[str, Any]) -> dict[str, str]:
    response = await client.post("/api/auth/api-keys", json={"name": "limited"}, headers=bearer(tokens))
    assert response.status_code == 201, response.text
    created = response.json()
    return {"id": created["id"], "Authorization": f"Bearer {created['key']}"}


def auth(key: dict[str, str]) -> dict[str, str]:
    return {"Authorization": key["Authorization"]}


def remaining(response: httpx.Response) -> int:
    return int(response.headers["x-ratelimit-remaining"])


async def test_headers_count_down_then_429_in_each_route_familys_error_form(
    slow: AsyncTestClient[Litestar],
) -> None:
    key = auth(await api_key(slow, await register(slow)))
    before = int(time.time())
    answers = [
        await slow.get("/v1/agents", headers=key),
        await slow.get(f"/v1/agents/{uuid.uuid4()}", headers=key),  # an error is counted and told too
        await slow.get("/v2/functions", headers=key),
        await slow.get("/v1/agents", headers=key),
    ]
    assert [a.status_code for a in answers] == [200, 404, 200, 200]
    assert [remaining(a) for a in answers] == [3, 2, 1, 0]
    assert {a.headers["x-ratelimit-limit"] for a in answers} == {"1"}
    # Reset: the unix time the bucket is full again (4 requests at 1 a minute: 4 minutes ahead).
    reset = int(answers[-1].headers["x-ratelimit-reset"])
    assert before + 4 * 60 - 2 <= reset <= int(time.time()) + 4 * 60 + 1

    refused = await slow.get("/v1/agents", headers=key)
    assert refused.status_code == 429
    body = refused.json()
    assert body["status"] == 429 and "rate limit" in body["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (refused.headers["x-ratelimit-limit"], remaining(refused)) == ("1", 0)
    v2 = await slow.get("/v2/functions", headers=key)
    assert v2.status_code == 429 and set(v2.json()) == {"detail"} and "rate limit" in v2.json()["detail"]
    assert "retry-after" in v2.headers and remaining(v2) == 0

    # Open routes are never limited nor counted, with or without a credential.
    for _ in range(3):
        health = await slow.get("/health", headers=key)
        assert health.status_code == 200 and not any(h in health.headers for h in HEADERS)
    assert (await slow.get("/ready", headers=key)).status_code in (200, 503)


async def test_retry_after_is_honest(endpoints: Endpoints, db: Database) -> None:
    """30 a minute (one every 2 s), burst 2: the third request waits `Retry-After` seconds, and a
    retry after exactly that long is admitted (sooner is not)."""
    await clear_rate_limits(endpoints)
    async for client in client_of(limited(endpoints, 30, 2)):
        key = auth(await api_key(client, await register(client)))
        assert [(await client.get("/v1/agents", headers=key)).status_code for _ in range(2)] == [200, 200]
        refused = await client.get("/v1/agents", headers=key)
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        refused_at = time.monotonic()
        too_soon = await client.get("/v1/agents", headers=key)
        if time.monotonic() - refused_at < wait - 0.5:  # (a loaded machine may already be past it)
            assert too_soon.status_code == 429
        # The wait is what is under test: exactly what the server said, then the request goes in.
        await asyncio.sleep(max(0.0, wait - (time.monotonic() - refused_at)))
        admitted = await client.get("/v1/agents", headers=key)
        assert admitted.status_code == 200, admitted.text
        assert remaining(admitted) == 0


async def test_an_sse_stream_counts_once_on_connect(endpoints: Endpoints, db: Database) -> None:
    await clear_rate_limits(endpoints)
    settings = limited(endpoints, 1, 10)
    redis = bus.connect(endpoints.redis_url)
    try:
        async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as client:
            user = await register(client)
            agent = (await client.post("/v1/agents", json={"name": "a"}, headers=bearer(user))).json()
            session = (
                await client.post(f"/v1/agents/{agent['id']}/sessions", json={}, headers=bearer(user))
            ).json()
            key = auth(await api_key(client, user))
            path = f"/v1/agents/{agent['id']}/sessions/{session['id']}/events"
            with running(app_for(settings, configure_logs=False)) as server:
                async with open_sse(server, path, headers=key) as stream:
                    assert remaining(stream.response) == 9  # the connect is one request
                    for step in range(5):
                        await store_and_publish(db, redis, uuid.UUID(session["id"]), step=step)
                    for step in range(5):
                        assert (await stream.event()).json()["data"] == {"step": step}
                after = await client.get("/v1/agents", headers=key)
            assert remaining(after) == 8  # five frames later: one request more, not six
    finally:
        await redis.aclose()


async def test_each_key_and_each_user_is_a_bucket_of_its_own(slow: AsyncTestClient[Litestar]) -> None:
    user = await register(slow)
    key, other_key = auth(await api_key(slow, user)), auth(await api_key(slow, user))
    project = await slow.post("/v1/projects", json={"name": "limited"}, headers=bearer(user))
    project_key = {"Authorization": f"Bearer {project.json()['api_key']}"}
    for _ in range(4):
        assert (await slow.get("/v1/agents", headers=key)).status_code == 200
    assert (await slow.get("/v1/agents", headers=key)).status_code == 429
    # The same user's other key, their project key and their own token: untouched buckets.
    assert remaining(await slow.get("/v1/agents", headers=other_key)) == 3
    traces = await slow.get("/v1/traces", headers=project_key)
    assert traces.status_code == 200 and remaining(traces) == 3
    # The token's bucket is the user's: it made the two keys and the project (3), this is its 4th.
    token = await slow.get("/v1/agents", headers=bearer(user))
    assert token.status_code == 200 and remaining(token) == 0
    # A project key's own 403 (a route it may not use) is refused before it counts.
    assert (await slow.get("/v1/agents", headers=project_key)).status_code == 403
    assert remaining(await slow.get("/v1/traces", headers=project_key)) == 2


async def admin_of(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    return bearer(response.json())


async def test_an_admins_plans_and_overrides_take_effect(endpoints: Endpoints, db: Database) -> None:
    await clear_rate_limits(endpoints)
    # The default plan here is free (100 a minute); the admin puts their own account on pro.
    async for client in client_of(full_settings(endpoints, RATE_LIMIT_PLAN="free")):
        admin = await admin_of(client)
        me = (await client.get("/api/auth/me", headers=admin)).json()
        assert (
            await client.put(f"/v1/rate-limits/users/{me['id']}", json={"plan": "pro"}, headers=admin)
        ).json()["per_minute"] == 1000
        user = await register(client)
        user_id = (await client.get("/api/auth/me", headers=bearer(user))).json()["id"]
        key_info = await api_key(client, user)
        key, other_key = auth(key_info), auth(await api_key(client, user))
        first = await client.get("/v1/agents", headers=key)
        assert (first.headers["x-ratelimit-limit"], remaining(first)) == ("100", 199)  # free: burst 200

        # A key's own figures.
        own = await client.put(
            f"/v1/rate-limits/api-keys/{key_info['id']}",
            json={"plan": "enterprise", "per_minute": 1, "burst": 3},
            headers=admin,
        )
        assert own.status_code == 200, own.text
        assert own.json() | {"updated_at": None} == {
            "subject_type": "api-keys",
            "subject_id": key_info["id"],
            "plan": "enterprise",
            "per_minute": 1,
            "burst": 3,
            "source": "key",
            "updated_at": None,
        }
        answers = [await client.get("/v1/agents", headers=key) for _ in range(3)]
        # The bucket remembers the free plan's request: 2 left of 3, then 1, 0, and 429.
        assert [(a.headers["x-ratelimit-limit"], a.status_code) for a in answers] == [("1", 200)] * 2 + [
            ("1", 429)
        ]
        # The user's plan: every credential of theirs without its own.
        assert (
            await client.put(f"/v1/rate-limits/users/{user_id}", json={"plan": "teams"}, headers=admin)
        ).status_code == 200
        assert (await client.get("/v1/agents", headers=other_key)).headers["x-ratelimit-limit"] == "5000"
        assert (await client.get("/v1/agents", headers=bearer(user))).headers["x-ratelimit-limit"] == "5000"
        assert (await client.get("/v1/agents", headers=key)).headers["x-ratelimit-limit"] == "1"  # its own
        read = (await client.get(f"/v1/rate-limits/api-keys/{key_info['id']}", headers=admin)).json()
        assert (read["plan"], read["source"]) == ("enterprise", "key")

        # Removing the key's own: back to its user's plan.
        gone = await client.delete(f"/v1/rate-limits/api-keys/{key_info['id']}", headers=admin)
        assert gone.status_code == 204
        assert (await client.get("/v1/agents", headers=key)).headers["x-ratelimit-limit"] == "5000"
        read = (await client.get(f"/v1/rate-limits/api-keys/{key_info['id']}", headers=admin)).json()
        assert (read["plan"], read["per_minute"], read["burst"], read["source"]) == (
            "teams",
            5000,
            10000,
            "user",
        )
        listed = (await client.get("/v1/rate-limits", headers=admin)).json()["data"]
        assert {(r["subject_type"], r["subject_id"], r["plan"]) for r in listed} == {
            ("users", user_id, "teams"),
            ("users", me["id"], "pro"),
        }

        # A project key takes an override too.
        project = (await client.post("/v1/projects", json={"name": "p"}, headers=bearer(user))).json()
        project_key = {"Authorization": f"Bearer {project['api_key']}"}
        set_project = await client.put(
            f"/v1/rate-limits/project-keys/{project['keys'][0]['id']}", json={"plan": "pro"}, headers=admin
        )
        assert set_project.status_code == 200, set_project.text
        assert (await client.get("/v1/traces", headers=project_key)).headers["x-ratelimit-limit"] == "1000"

        # What is refused: figures with a plan of the table, enterprise without them, no such key.
        for body, field in (
            ({"plan": "pro", "per_minute": 5}, "per_minute"),
            ({"plan": "enterprise", "burst": 5}, "per_minute"),
            ({"plan": "gold"}, "plan"),
            ({"plan": "enterprise", "per_minute": 0, "burst": 1}, "per_minute"),
        ):
            bad = await client.put(f"/v1/rate-limits/api-keys/{key_info['id']}", json=body, headers=admin)
            assert (bad.status_code, bad.json().get("field")) == (400, field), bad.text
        missing = await client.put(
            f"/v1/rate-limits/api-keys/{uuid.uuid4()}", json={"plan": "pro"}, headers=admin
        )
        assert missing.status_code == 404
        assert (
            await client.delete(f"/v1/rate-limits/users/{uuid.uuid4()}", headers=admin)
        ).status_code == 404
        assert (await client.get(f"/v1/rate-limits/teams/{user_id}", headers=admin)).status_code in (400, 404)


async def test_a_user_cannot_read_or_set_limits(endpoints: Endpoints, db: Database) -> None:
    await clear_rate_limits(endpoints)
    async for slow in client_of(limited(endpoints, 1, 50)):
        await _user_cannot_set_limits(slow)


async def _user_cannot_set_limits(slow: AsyncTestClient[Litestar]) -> None:
    user = await register(slow)
    me = bearer(user)
    user_id = (await slow.get("/api/auth/me", headers=me)).json()["id"]
    for method, path, body in (
        ("GET", "/v1/rate-limits", None),
        ("GET", f"/v1/rate-limits/users/{user_id}", None),
        (
            "PUT",
            f"/v1/rate-limits/users/{user_id}",
            {"plan": "enterprise", "per_minute": 9999, "burst": 9999},
        ),
        ("DELETE", f"/v1/rate-limits/users/{user_id}", None),
    ):
        response = await slow.request(method, path, json=body, headers=me)
        assert response.status_code == 403, (method, path, response.text)
    plans = await slow.get("/v1/rate-limits/plans", headers=bearer(await register(slow)))
    assert plans.status_code == 200
    assert plans.json() == {
        "data": [
            {"name": "free", "per_minute": 100, "burst": 200},
            {"name": "pro", "per_minute": 1000, "burst": 2000},
            {"name": "teams", "per_minute": 5000, "burst": 10000},
            {"name": "enterprise", "per_minute": None, "burst": None},
        ],
        "default": "enterprise",
    }


async def test_requests_are_served_unlimited_while_redis_is_away(
    endpoints: Endpoints, db: Database, tmp_path: Path
) -> None:
    with own_redis(tmp_path) as redis_server:
        settings = limited(endpoints, 1, 2, REDIS_URL=redis_server.url)
        async for client in client_of(settings):
            key = auth(await api_key(client, await register(client)))
            assert [(await client.get("/v1/agents", headers=key)).status_code for _ in range(3)] == [
                200,
                200,
                429,
            ]
            await asyncio.to_thread(redis_server.stop)
            with capture_logs() as logs:
                served = [await client.get("/v1/agents", headers=key) for _ in range(10)]
            assert [s.status_code for s in served] == [200] * 10
            assert not any(h in s.headers for s in served for h in HEADERS)  # nothing counted, nothing told
            off = [entry for entry in logs if entry["event"].startswith("rate limits off")]
            assert len(off) == 1, logs  # once, not once per request
            # Redis back (empty, as nothing is persisted): counted again once the pause is over.
            await asyncio.to_thread(redis_server.start)
            deadline = time.monotonic() + 10
            while (
                "x-ratelimit-remaining" not in (again := await client.get("/v1/agents", headers=key)).headers
            ):
                assert time.monotonic() < deadline, "the limits never came back"
                await asyncio.sleep(0.2)
            assert again.status_code == 200 and remaining(again) == 1


async def test_a_redis_that_never_answers_costs_each_request_at_most_one_deadline(
    endpoints: Endpoints, db: Database
) -> None:
    """A Redis that accepts connections and never replies (a blackhole, a SIGSTOPped server): a
    volley of requests, four times the process's Redis slots, is served unlimited within about one
    RATE_LIMIT_TIMEOUT_S, and requests that arrive while it waits go through as soon as Redis is found
    failing. The deadline once started only when a request got a slot, and a queued request asked
    Redis anyway once it got one: the volley came back in waves, the last after four deadlines."""
    timeout_s = 1.5
    volley = 4 * 16  # core/rate_limit.py's IN_FLIGHT: every request past the 16th queues for a slot
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):  # read and drop whatever is sent, answer nothing
            pass

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=2)
    settings = limited(endpoints, 1, 2, RATE_LIMIT_TIMEOUT_S=str(timeout_s))
    assert settings.rate_limit_timeout_s == timeout_s
    # The middleware's own call (api/rate_limit.py) with the rate limiter's Redis being the silent one.
    limits = RateLimits(db, client, settings)
    who = Identity(user_id=uuid.uuid4(), email="hung@example.com", role="user", method="token")

    async def one() -> tuple[float, float, object]:
        started = time.monotonic()
        decision = await limits.take(who)
        return started, time.monotonic(), decision

    try:
        with capture_logs() as logs:
            first = asyncio.gather(*(one() for _ in range(volley)))
            # Requests arriving half a deadline later, while every slot is held and 48 queue: the
            # arrival time is the scenario here, not a wait for an event.
            await asyncio.sleep(timeout_s / 2)
            later = asyncio.gather(*(one() for _ in range(16)))
            answered = await asyncio.wait_for(asyncio.gather(first, later), 30)
            firsts, laters = answered
            assert [d for _, _, d in firsts + laters] == [None] * (volley + 16)  # all served, unlimited
            waits = sorted(end - start for start, end, _ in firsts)
            # Redis was asked and hung (not refused), and nobody waited much past one deadline.
            assert waits[-1] >= 0.9 * timeout_s, waits
            assert waits[-1] < 1.6 * timeout_s, waits
            # The later ones go through when the first volley finds Redis failing, not a deadline after
            # their own arrival (asking the hung Redis once they got a slot).
            first_done = max(end for _, end, _ in firsts)
            assert max(end for _, end, _ in laters) < first_done + 0.25 * timeout_s, (first_done, laters)
            # Redis has failed: the next request goes through without asking it.
            started, done, decision = await one()
            assert decision is None and done - started < 0.25 * timeout_s, done - started
        off = [entry for entry in logs if entry["event"].startswith("rate limits off")]
        assert len(off) == 1, logs  # once, not once per request
    finally:
        await client.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def test_the_default_plans_settings_are_checked_when_they_load(endpoints: Endpoints) -> None:
    assert limited(endpoints, 7, 9).rate_limit_per_minute == 7
    defaults = full_settings(endpoints)
    assert (defaults.rate_limits_enabled, defaults.rate_limit_plan, defaults.rate_limit_burst) == (
        True,
        "teams",
        None,
    )
    for env, named in (
        ({"RATE_LIMIT_PLAN": "gold"}, "RATE_LIMIT_PLAN"),
        ({"RATE_LIMIT_PLAN": "enterprise"}, "RATE_LIMIT_PER_MINUTE"),  # custom without its figures
        ({"RATE_LIMIT_PLAN": "enterprise", "RATE_LIMIT_PER_MINUTE": "5"}, "RATE_LIMIT_BURST"),
        (
            {"RATE_LIMIT_PLAN": "pro", "RATE_LIMIT_PER_MINUTE": "5", "RATE_LIMIT_BURST": "5"},
            "RATE_LIMIT_PER_MINUTE",
        ),
        (
            {"RATE_LIMIT_PLAN": "enterprise", "RATE_LIMIT_PER_MINUTE": "0", "RATE_LIMIT_BURST": "5"},
            "RATE_LIMIT_PER_MINUTE",
        ),
        ({"RATE_LIMITS": "sometimes"}, "RATE_LIMITS"),
        ({"RATE_LIMIT_CACHE_S": "0"}, "RATE_LIMIT_CACHE_S"),
        ({"RATE_LIMIT_TIMEOUT_S": "0"}, "RATE_LIMIT_TIMEOUT_S"),
    ):
        with pytest.raises(SettingsError, match=named):
            full_settings(endpoints, **env)
