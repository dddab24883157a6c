"""Webhooks delivered for real: the API, a worker with the delivery workflow, the dispatcher, and a
real receiver on 127.0.0.1 (so the webhooks are an admin's with `allow_private`). Signatures are
checked with `standardwebhooks`, the Standard Webhooks reference library, not with our code.

Covered: a ping, retries after 500s and a dropped connection with one `webhook-id`, the last
attempt failing the delivery, 410 disabling the webhook, redelivery, a delivery stored while no
dispatcher ran (as after a crash between commit and start) and dispatched twice, the address
refused at delivery time (pinned connection), a worker process killed mid-delivery, and the
events a real turn and a trace's status make."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook as Verifier
from temporalio.client import Client

from core import bus
from core.db import Database
from core.db.models import Trace
from core.db.webhooks import Webhook, WebhookDelivery
from core.schemas import webhook_payloads
from core.schemas.webhooks import WebhookLoop
from everloop.stack import Endpoints
from everloop.sweeper import WebhookDispatcher
from everloop.worker import WORKFLOWS, build_worker
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.replaying import replay
from tests.servers import running
from tests.webhook_receiver import Received, receiving
from tests.workers import Workers
from tests.workflows.test_stack_check import HISTORIES

# Fast, for tests: four attempts 0.3 s apart (the real schedule is tested on the time-skipping
# server, tests/workflows/test_webhook_delivery.py).
FAST = "0,0.3,0.3,0.3"


@pytest.fixture
async def hooks(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> AsyncIterator[Loop]:
    """The loop's stack with the webhook dispatcher running (a worker process runs it in its
    sweeper; here it runs beside the in-process worker)."""
    settings = make_settings(
        endpoints, TEMPORAL_TASK_QUEUE=task_queue, WEBHOOK_RETRY_SCHEDULE=FAST, WEBHOOK_TIMEOUT="5"
    )
    redis = bus.connect(endpoints.redis_url)
    worker = build_worker(temporal_client, settings, db, redis)
    dispatcher = WebhookDispatcher(db, temporal_client, task_queue, settings.webhook_retry_schedule_s)
    with running(app_for(settings, configure_logs=False)) as server:
        async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            task = asyncio.create_task(dispatcher.run_forever())
            try:
                yield Loop(client, db, endpoints, settings, temporal_client, simulator_url, worker)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    await redis.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    """Polls `check` until it holds (a row the worker writes), failing after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def create(client: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", json={"url": url, "allow_private": True, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["secret"].startswith("whsec_")
    return created


async def ping(client: httpx.AsyncClient, hook: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/v1/webhooks/{hook['id']}/test")
    assert response.status_code == 202, response.text
    delivery: dict[str, Any] = response.json()
    assert delivery["event"] == "ping" and delivery["status"] == "pending"
    return delivery


async def delivery(client: httpx.AsyncClient, hook: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    found = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    return next(d for d in found if d["id"] == delivery_id)


async def until_status(
    client: httpx.AsyncClient, hook: dict[str, Any], delivery_id: str, status: str, timeout: float = 20
) -> dict[str, Any]:
    async def reached() -> bool:
        return bool((await delivery(client, hook, delivery_id))["status"] == status)

    await eventually(reached, timeout)
    return await delivery(client, hook, delivery_id)


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The payload, once the reference library has verified its signature (it raises otherwise)
    and the body has decoded as its event's Struct (the published contract, unknown fields refused)."""
    payload: dict[str, Any] = Verifier(secret).verify(request.body, request.headers)
    assert webhook_payloads.event_of(type(webhook_payloads.decode(request.body))) == payload["event"]
    return payload


async def test_a_ping_arrives_signed_as_standard_webhooks(hooks: Loop) -> None:
    async with receiving() as receiver:
        hook = await create(hooks.client, receiver.url)
        sent = await ping(hooks.client, hook)
        (request,) = await receiver.wait_for(1)
        done = await until_status(hooks.client, hook, sent["id"], "delivered")
    payload = verified(hook["secret"], request)
    assert payload["event"] == "ping" and payload["data"] == {"webhook_id": hook["id"]}
    assert payload["timestamp"].endswith("Z")
    assert request.headers["webhook-id"] == sent["id"]
    assert request.headers["content-type"] == "application/json"
    assert done["attempts"] == 1 and done["last_status_code"] == 200 and done["delivered_at"]
    # A tampered body or another secret does not verify.
    with pytest.raises(Exception, match="signature"):
        Verifier(hook["secret"]).verify(request.body + b" ", request.headers)
    with pytest.raises(Exception, match="signature"):
        Verifier("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)


async def test_retries_after_500s_and_a_dropped_connection_keep_one_webhook_id(hooks: Loop) -> None:
    async with receiving([500, "drop", 503]) as receiver:
        hook = await create(hooks.client, receiver.url)
        sent = await ping(hooks.client, hook)
        requests = await receiver.wait_for(4)
        done = await until_status(hooks.client, hook, sent["id"], "delivered")
    assert {r.headers["webhook-id"] for r in requests} == {sent["id"]}
    assert all(verified(hook["secret"], r)["event"] == "ping" for r in requests)
    assert done["attempts"] == 4 and done["last_status_code"] == 200 and done["last_error"] is None
    assert len(receiver.requests) == 4  # nothing after the success
    # Its history replays with today's code; saved, it keeps doing so (tests/workflows/histories).
    workflow_id = WebhookLoop.workflow_id(sent["id"], 1)
    history = await hooks.temporal.get_workflow_handle(workflow_id).fetch_history()
    await replay(history, WORKFLOWS)
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "webhook_retries.json").write_text(history.to_json())
    # A success ends the failure clock.
    got = (await hooks.client.get(f"/v1/webhooks/{hook['id']}")).json()
    assert got["failing_since"] is None and got["active"] is True


async def test_the_last_failed_attempt_fails_the_delivery_and_redelivery_starts_again(hooks: Loop) -> None:
    async with receiving([500, 500, 500, 500]) as receiver:
        hook = await create(hooks.client, receiver.url)
        sent = await ping(hooks.client, hook)
        failed = await until_status(hooks.client, hook, sent["id"], "failed")
        assert failed["attempts"] == 4 and failed["last_status_code"] == 500
        assert "HTTP 500" in failed["last_error"] and failed["next_attempt_at"] is None
        got = (await hooks.client.get(f"/v1/webhooks/{hook['id']}")).json()
        assert got["failing_since"] is not None and got["active"] is True

        again = await hooks.client.post(f"/v1/webhooks/{hook['id']}/deliveries/{sent['id']}/redeliver")
        assert again.status_code == 202, again.text
        assert again.json()["id"] == sent["id"] and again.json()["status"] == "pending"
        requests = await receiver.wait_for(5)
        done = await until_status(hooks.client, hook, sent["id"], "delivered")
    assert requests[-1].headers["webhook-id"] == sent["id"]
    verified(hook["secret"], requests[-1])
    assert done["attempts"] == 5


async def test_410_disables_the_webhook(hooks: Loop) -> None:
    async with receiving([410]) as receiver:
        hook = await create(hooks.client, receiver.url)
        sent = await ping(hooks.client, hook)
        failed = await until_status(hooks.client, hook, sent["id"], "failed")
        assert failed["attempts"] == 1 and failed["last_status_code"] == 410
        got = (await hooks.client.get(f"/v1/webhooks/{hook['id']}")).json()
        assert got["active"] is False and "410" in got["disabled_reason"]
        # Disabled: no ping, no redelivery until a person turns it on again.
        assert (await hooks.client.post(f"/v1/webhooks/{hook['id']}/test")).status_code == 409
        path = f"/v1/webhooks/{hook['id']}/deliveries/{sent['id']}/redeliver"
        assert (await hooks.client.post(path)).status_code == 409
        on = await hooks.client.patch(f"/v1/webhooks/{hook['id']}", json={"active": True})
        assert on.json()["active"] is True and on.json()["disabled_reason"] is None
        assert (await hooks.client.post(path)).status_code == 202
        await until_status(hooks.client, hook, sent["id"], "delivered")
    assert [r.headers["webhook-id"] for r in receiver.requests] == [sent["id"], sent["id"]]


async def test_a_webhook_failing_for_too_long_is_disabled(hooks: Loop) -> None:
    async with receiving([500] * 8) as receiver:
        hook = await create(hooks.client, receiver.url)
        # As if every attempt had failed for a week already.
        async with hooks.db.session() as s:
            await s.execute(
                update(Webhook)
                .where(Webhook.id == uuid.UUID(hook["id"]))
                .values(failing_since=datetime(2020, 1, 1, tzinfo=UTC))
            )
            await s.commit()
        sent = await ping(hooks.client, hook)
        failed = await until_status(hooks.client, hook, sent["id"], "failed")
    assert failed["attempts"] == 1  # no retry once the webhook is off
    got = (await hooks.client.get(f"/v1/webhooks/{hook['id']}")).json()
    assert got["active"] is False and "every delivery failed since 2020-01-01" in got["disabled_reason"]
    assert len(receiver.requests) == 1


async def test_a_delivery_stored_while_no_dispatcher_ran_is_sent_once_however_often_dispatched(
    endpoints: Endpoints, db: Database, temporal_client: Client, task_queue: str
) -> None:
    """The API stored the delivery and nothing started its workflow (the notice was lost, every
    worker was down): a dispatcher that comes later starts it; several at once start it once."""
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue, WEBHOOK_RETRY_SCHEDULE=FAST)
    redis = bus.connect(endpoints.redis_url)
    async with receiving() as receiver:
        with running(app_for(settings, configure_logs=False)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                hook = await create(client, receiver.url)
                sent = await ping(client, hook)
                async with db.session() as s:
                    row = await s.get(WebhookDelivery, uuid.UUID(sent["id"]))
                    assert row is not None and row.workflow_started_at is None
                dispatchers = [
                    WebhookDispatcher(db, temporal_client, task_queue, settings.webhook_retry_schedule_s)
                    for _ in range(3)
                ]
                started = await asyncio.gather(*(d.run_once() for d in dispatchers))
                assert sum(started) >= 1
                async with build_worker(temporal_client, settings, db, redis):
                    await receiver.wait_for(1)
                    await until_status(client, hook, sent["id"], "delivered")
                    # Dispatched again: nothing left to start.
                    assert await dispatchers[0].run_once() == 0
    await redis.aclose()
    assert len(receiver.requests) == 1


async def test_an_address_that_turned_private_is_refused_at_delivery(hooks: Loop) -> None:
    """Checked when created, and again, on the connection itself, at every attempt: a name that
    resolves elsewhere later (DNS rebinding) reaches nothing private. Here the stored URL is
    changed under the webhook, as a DNS answer would change."""
    async with receiving() as receiver:
        created = await hooks.client.post("/v1/webhooks", json={"url": "http://1.1.1.1:9/hooks"})
        assert created.status_code == 201, created.text
        hook = created.json()
        port = receiver.url.split(":")[2].split("/")[0]
        async with hooks.db.session() as s:
            await s.execute(
                update(Webhook)
                .where(Webhook.id == uuid.UUID(hook["id"]))
                .values(url=f"http://localhost:{port}/hooks")
            )
            await s.commit()
        sent = await ping(hooks.client, hook)
        failed = await until_status(hooks.client, hook, sent["id"], "failed")
    assert receiver.requests == []
    assert failed["attempts"] == 4 and failed["last_status_code"] is None
    assert "localhost resolves to a loopback address" in failed["last_error"]


async def test_a_real_turn_and_its_trace_send_their_events(hooks: Loop) -> None:
    async with receiving() as receiver:
        every = await create(hooks.client, receiver.url)
        only_failures = await create(hooks.client, receiver.url, events=["turn.failed", "trace.error"])
        base = await hooks.chat()
        await hooks.send(base, "hi")
        # turn.completed, session.idled, trace.completed, to the first webhook only.
        requests = await receiver.wait_for(3)
        session_id = base.rsplit("/", 1)[1]
        by_event = {verified(every["secret"], r)["event"]: r.json() for r in requests}
        assert set(by_event) == {"turn.completed", "session.idled", "trace.completed"}
        turn = by_event["turn.completed"]["data"]
        assert turn["session_id"] == session_id and turn["turn_id"] and turn["iterations"] == 1
        trace = by_event["trace.completed"]["data"]
        assert trace["trace_id"] == turn["turn_id"] and trace["session_id"] == session_id
        assert trace["status"] == "completed" and isinstance(trace["duration_ms"], int)
        assert "total_cost" in trace

        # A trace that fails (an outside app's, through 001's ingestion): trace.error to both.
        batch = {
            "spans": [
                {
                    "trace_id": "t-err",
                    "span_id": "s1",
                    "name": "send email",
                    "kind": "tool",
                    "status": "error",
                    "error": "SMTP authentication failed",
                    "start_time": "2026-03-17T14:16:20Z",
                }
            ]
        }
        response = await hooks.client.post("/v1/traces", json=batch)
        assert response.status_code in (200, 201, 202), response.text
        later = await receiver.wait_for(5)
    errors = [r for r in later[3:] if r.json()["event"] == "trace.error"]
    assert len({r.headers["webhook-id"] for r in errors}) == len(errors) == 2  # one per webhook
    for request in errors:
        try:
            payload = verified(every["secret"], request)
        except Exception:
            payload = verified(only_failures["secret"], request)
        assert payload["data"]["trace_id"] == "t-err"
        assert payload["data"]["error"] == {
            "type": "tool_error",
            "message": "SMTP authentication failed",
            "step": 1,
        }
    async with hooks.db.session() as s:
        status = (await s.execute(select(Trace.status).where(Trace.trace_id == "t-err"))).scalar_one()
    assert status == "error"


async def test_a_worker_killed_mid_delivery_loses_nothing(
    endpoints: Endpoints, db: Database, workers: Workers, task_queue: str
) -> None:
    """The receiver holds the first request; the worker process that sent it is killed; another
    takes the attempt over (Temporal sees the heartbeats stop) and the receiver gets the event
    again, with the same `webhook-id`: at least once."""
    workers.env.update(WEBHOOK_RETRY_SCHEDULE=FAST, WEBHOOK_TIMEOUT="60")
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    async with receiving(["hold"]) as receiver:
        with running(app_for(settings, configure_logs=False)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                first = workers.start()
                hook = await create(client, receiver.url)
                sent = await ping(client, hook)
                await receiver.wait_for(1, timeout=60)
                workers.kill(first)
                workers.start()
                requests = await receiver.wait_for(2, timeout=60)
                done = await until_status(client, hook, sent["id"], "delivered", timeout=60)
    assert [r.headers["webhook-id"] for r in requests] == [sent["id"], sent["id"]]
    for request in requests:
        assert verified(hook["secret"], request)["event"] == "ping"
    assert done["last_status_code"] == 200


async def test_without_webhooks_a_turn_stores_no_delivery(hooks: Loop) -> None:
    base = await hooks.chat()
    await hooks.send(base, "hi")
    async with hooks.db.session() as s:
        assert (await s.execute(select(WebhookDelivery))).first() is None
