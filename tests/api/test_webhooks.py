"""`/v1/webhooks` over HTTP, with users signed in (AUTH_MODE=full) and no worker: CRUD, the secret
(made or given, shown once, encrypted at rest, never returned again), the checks on what a user may
give (a public URL only, known events, a long enough secret, no `allow_private`), deliveries and
redelivery as rows, and owners. Delivery itself: tests/loop/test_webhooks.py."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db import Database
from core.db.models import GoldenRun, Project, Replay
from core.db.webhooks import Webhook, WebhookDelivery
from core.schemas import events as ev
from core.schemas import webhook_payloads
from core.schemas.webhooks import EVENTS
from everloop.stack import Endpoints
from services import events, webhooks
from tests.api.test_auth_full import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    As,
    clear_rate_limits,
    full_settings,
    register,
)
from tests.apps import app_for

# A public address: nothing is sent there without a worker.
PUBLIC_URL = "http://1.1.1.1:9/hooks"


def typed(rows: list[WebhookDelivery]) -> list[str]:
    """Each stored body decoded as its event's Struct (core/schemas/webhook_payloads.py, unknown
    fields refused; it raises otherwise): the triggers' SQL keeps the published contract."""
    return [webhook_payloads.event_of(type(webhook_payloads.convert(r.payload))) for r in rows]


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


async def users(client: AsyncTestClient[Litestar]) -> tuple[As, As, As]:
    login = await client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    return As(client, login.json()), As(client, await register(client)), As(client, await register(client))


async def test_crud_and_a_secret_shown_once(client: AsyncTestClient[Litestar], db: Database) -> None:
    _, alice, _ = await users(client)
    made = await alice.post("/v1/webhooks", {"url": PUBLIC_URL, "events": ["turn.completed", "trace.error"]})
    assert made.status_code == 201, made.text
    hook = made.json()
    secret = hook["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert hook["events"] == ["turn.completed", "trace.error"] and hook["active"] is True
    assert hook["allow_private"] is False and hook["disabled_reason"] is None

    path = f"/v1/webhooks/{hook['id']}"
    got = await alice.get(path)
    listed = await alice.get("/v1/webhooks")
    changed = await alice.patch(path, {"events": [], "active": False})
    assert got.status_code == listed.status_code == changed.status_code == 200
    assert changed.json()["events"] == [] and changed.json()["active"] is False
    assert listed.json()["total"] == 1 and listed.json()["data"][0]["id"] == hook["id"]
    # The secret never comes back, and is not stored in the clear.
    for response in (got, listed, changed):
        assert "secret" not in response.text and secret[6:] not in response.text
    async with db.session() as s:
        row = (await s.execute(select(Webhook))).scalar_one()
    assert secret.encode() not in row.secret_encrypted and secret[6:].encode() not in row.secret_encrypted

    # A new secret is write-only too.
    rotated = await alice.patch(path, {"secret": "whsec_" + base64.b64encode(b"n" * 24).decode()})
    assert rotated.status_code == 200 and "secret" not in rotated.text

    assert (await alice.delete(path)).status_code == 204
    assert (await alice.get(path)).status_code == 404


async def test_a_given_secret_is_kept_or_taken_as_the_keys_bytes(client: AsyncTestClient[Litestar]) -> None:
    _, alice, _ = await users(client)
    given = "whsec_" + base64.b64encode(b"k" * 24).decode()
    made = await alice.post("/v1/webhooks", {"url": PUBLIC_URL, "secret": given})
    assert made.json()["secret"] == given
    raw = await alice.post("/v1/webhooks", {"url": PUBLIC_URL, "secret": "a raw secret of enough bytes"})
    assert raw.json()["secret"] == "whsec_" + base64.b64encode(b"a raw secret of enough bytes").decode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": PUBLIC_URL, "events": ["turn.completed", "turn.exploded"]}, "turn.exploded"),
        ({"url": PUBLIC_URL, "secret": "short"}, "16 to 64 bytes"),
        ({"url": PUBLIC_URL, "secret": "whsec_" + base64.b64encode(b"k" * 8).decode()}, "16 to 64 bytes"),
        ({"url": PUBLIC_URL, "secret": "whsec_not base64!"}, "base64"),
        ({"url": PUBLIC_URL, "colour": "blue"}, "colour"),
    ],
)
async def test_malformed_input_is_a_clear_400(
    client: AsyncTestClient[Litestar], body: dict[str, Any], says: str
) -> None:
    _, alice, _ = await users(client)
    response = await alice.post("/v1/webhooks", body)
    assert response.status_code == 400, response.text
    assert says in response.text
    assert (await alice.get("/v1/webhooks")).json()["total"] == 0


async def test_an_unknown_event_lists_the_known_ones(client: AsyncTestClient[Litestar]) -> None:
    _, alice, _ = await users(client)
    response = await alice.post("/v1/webhooks", {"url": PUBLIC_URL, "events": ["trace.done"]})
    assert response.status_code == 400
    message = response.json()["error"]
    assert response.json()["field"] == "events"
    assert all(event in message for event in EVENTS)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hooks",
        "http://10.0.0.1/hooks",
        "http://169.254.169.254/latest",
        "http://localhost/x",
    ],
)
async def test_a_user_may_not_point_a_webhook_into_the_servers_network(
    client: AsyncTestClient[Litestar], url: str
) -> None:
    admin, alice, _ = await users(client)
    refused = await alice.post("/v1/webhooks", {"url": url})
    assert refused.status_code == 400, refused.text
    assert "only an admin may point a webhook at a non-public address" in refused.text
    # Nor by a change of address, nor by asking for it.
    hook = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL})).json()
    moved = await alice.patch(f"/v1/webhooks/{hook['id']}", {"url": url})
    assert moved.status_code == 400, moved.text
    asked = await alice.post("/v1/webhooks", {"url": url, "allow_private": True})
    assert asked.status_code == 403 and "only an admin" in asked.text
    # An admin may, when they say so.
    assert (await admin.post("/v1/webhooks", {"url": url})).status_code == 400
    allowed = await admin.post("/v1/webhooks", {"url": url, "allow_private": True})
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["allow_private"] is True


async def test_ping_and_redeliver_store_deliveries_for_the_dispatcher(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    _, alice, bob = await users(client)
    hook = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL})).json()
    sent = await alice.post(f"/v1/webhooks/{hook['id']}/test", {})
    assert sent.status_code == 202, sent.text
    delivery = sent.json()
    assert delivery["event"] == "ping" and delivery["status"] == "pending" and delivery["attempts"] == 0
    assert delivery["payload"]["data"] == {"webhook_id": hook["id"]}
    # Built as the triggers build theirs: whole seconds, UTC, `Z`.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", delivery["payload"]["timestamp"])
    assert delivery["payload"]["event"] == "ping"
    listed = (await alice.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()
    assert [d["id"] for d in listed["data"]] == [delivery["id"]] and listed["total"] == 1

    again = await alice.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", {})
    assert again.status_code == 202 and again.json()["id"] == delivery["id"]
    async with db.session() as s:
        row = (await s.execute(select(WebhookDelivery))).scalar_one()
    assert row.series == 2 and row.workflow_started_at is None and row.status == "pending"

    # Another user's: not found, whichever way.
    for path in (
        f"/v1/webhooks/{hook['id']}",
        f"/v1/webhooks/{hook['id']}/deliveries",
    ):
        assert (await bob.get(path)).status_code == 404
    assert (await bob.post(f"/v1/webhooks/{hook['id']}/test", {})).status_code == 404
    redeliver = f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver"
    assert (await bob.post(redeliver, {})).status_code == 404
    assert (await bob.get("/v1/webhooks")).json()["total"] == 0
    # A delivery of another webhook of hers, named under this one: not found either.
    other = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL})).json()
    wrong = f"/v1/webhooks/{other['id']}/deliveries/{delivery['id']}/redeliver"
    assert (await alice.post(wrong, {})).status_code == 404

    # Deleting the webhook deletes its deliveries.
    assert (await alice.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
    async with db.session() as s:
        assert (await s.execute(select(WebhookDelivery))).first() is None


async def test_events_of_an_owner_without_webhooks_store_nothing(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    """The triggers: a trace's error stores a delivery only for the owner's matching webhooks."""
    _, alice, bob = await users(client)
    hook = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL, "events": ["trace.error"]})).json()
    (await alice.post("/v1/webhooks", {"url": PUBLIC_URL, "events": ["turn.completed"]})).json()
    span = {"trace_id": "t1", "span_id": "s1", "name": "x", "status": "error", "error": "boom", "kind": "llm"}
    assert (await bob.post("/v1/traces", {"spans": [span]})).status_code == 201
    async with db.session() as s:
        assert (await s.execute(select(WebhookDelivery))).first() is None
    assert (await alice.post("/v1/traces", {"spans": [span]})).status_code == 201
    # Sent again: the status does not change, so no second event.
    assert (await alice.post("/v1/traces", {"spans": [span]})).status_code == 201
    async with db.session() as s:
        rows = list((await s.execute(select(WebhookDelivery))).scalars())
    assert [(str(r.webhook_id), r.event) for r in rows] == [(hook["id"], "trace.error")]
    assert typed(rows) == ["trace.error"]
    data = rows[0].payload["data"]
    assert data["trace_id"] == "t1" and data["error"] == {"type": "llm_error", "message": "boom", "step": 1}


async def test_a_replay_and_a_golden_run_that_end_store_their_events(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    """The triggers on `replays` and `golden_runs`: an event when the status becomes a final one,
    once, with the run's figures (the runs themselves: tests/loop/test_replay*.py, test_golden.py)."""
    _, alice, _ = await users(client)
    hook = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL})).json()
    user_id = (await alice.get("/api/auth/me")).json()["id"]
    async with db.session() as s:
        project = Project(owner_id=uuid.UUID(user_id), name="p")
        s.add(project)
        await s.flush()
        replay = Replay(owner_id=project.owner_id, project_id=project.id, original_trace_id="t0", kind="fork")
        run = GoldenRun(owner_id=project.owner_id, total_tests=3)
        s.add_all([replay, run])
        await s.commit()
        for status in ("running", "completed", "completed"):
            replay.status = status
            await s.commit()
        run.status = "running"
        await s.commit()
        run.status, run.passed, run.failed = "completed", 2, 1
        await s.commit()
        rows = list((await s.execute(select(WebhookDelivery).order_by(WebhookDelivery.id))).scalars())
    assert [(str(r.webhook_id), r.event) for r in rows] == [
        (hook["id"], "replay.completed"),
        (hook["id"], "golden_test_run.completed"),
    ]
    assert typed(rows) == ["replay.completed", "golden_test_run.completed"]
    assert rows[0].payload["data"] == {
        "replay_id": str(replay.id),
        "kind": "fork",
        "status": "completed",
        "original_trace_id": "t0",
        "result_trace_id": None,
        "session_id": None,
        "error": None,
    }
    assert rows[1].payload["data"] == {
        "run_id": str(run.id),
        "status": "completed",
        "total_tests": 3,
        "passed": 2,
        "failed": 1,
        "error": None,
    }
    assert rows[0].payload["event"] == "replay.completed" and rows[0].payload["timestamp"].endswith("Z")


async def test_session_events_store_their_events(client: AsyncTestClient[Litestar], db: Database) -> None:
    """The trigger on `events`: a turn's failure and an approval request as the loop stores them
    (the loop itself: tests/loop/test_webhooks.py), only the types the webhook asked for."""
    _, alice, _ = await users(client)
    hook = (
        await alice.post(
            "/v1/webhooks", {"url": PUBLIC_URL, "events": ["turn.failed", "tool.approval_requested"]}
        )
    ).json()
    provider = (await alice.post("/v1/llm-providers", {"name": "Sim", "provider_type": "simulator"})).json()
    model = (await alice.post(f"/v1/llm-providers/{provider['id']}/models", {"model_id": "sim-1"})).json()
    agent = (
        await alice.post("/v1/agents", {"name": "A", "system_prompt": "x", "default_model_id": model["id"]})
    ).json()
    session_id = uuid.UUID((await alice.post(f"/v1/agents/{agent['id']}/sessions", {})).json()["id"])
    context = {"turn_id": "t1"}
    async with db.session() as s:
        await events.append(
            s, session_id, ev.TurnFailed(turn_id="t1", error="boom", error_code="llm_error"), context=context
        )
        asked = ev.ToolApprovalRequested(
            tool_call_id="c1", tool_name="add", arguments={"a": 1}, approval_timeout_s=None
        )
        await events.append(s, session_id, asked, context=context)
        await events.append(s, session_id, ev.SessionIdled(turn_id="t1", iterations=1), context=context)
        await s.commit()
        rows = list((await s.execute(select(WebhookDelivery).order_by(WebhookDelivery.id))).scalars())
    assert [(str(r.webhook_id), r.event) for r in rows] == [
        (hook["id"], "turn.failed"),
        (hook["id"], "tool.approval_requested"),
    ]
    assert typed(rows) == ["turn.failed", "tool.approval_requested"]
    failed = rows[0].payload["data"]
    assert {
        k: failed[k] for k in ("turn_id", "error", "error_code", "session_id", "agent_id", "sequence")
    } == {
        "turn_id": "t1",
        "error": "boom",
        "error_code": "llm_error",
        "session_id": str(session_id),
        "agent_id": agent["id"],
        "sequence": 1,
    }
    assert failed["event_id"] and failed["ts"]
    assert rows[1].payload["data"]["arguments"] == {"a": 1} and rows[1].payload["data"]["tool_name"] == "add"


async def until_waiting_for_a_lock(db: Database, pid: int) -> None:
    """Returns once the backend `pid` waits for a row lock (another transaction's)."""
    async with asyncio.timeout(30):
        while True:
            async with db.engine.connect() as conn:
                waiting = await conn.scalar(
                    text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                )
            if waiting:
                return
            await asyncio.sleep(0.02)  # pg_stat_activity has no event to await


async def backend_pid(conn: AsyncConnection) -> int:
    pid = await conn.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


async def test_a_webhook_deleted_while_an_event_is_written_does_not_fail_the_writer(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    """The trigger's insert of a delivery for a webhook whose DELETE commits while the writer
    waits for it: the writer (the loop's store among them) failed with a ForeignKeyViolation on
    the delivery's webhook_id. The webhook is now locked as it is read: skipped once deleted."""
    _, alice, _ = await users(client)
    hook = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL})).json()
    trace_id = f"race-{uuid.uuid4()}"
    span = {"trace_id": trace_id, "span_id": "s1", "name": "x", "status": "error", "error": "boom"}
    assert (await alice.post("/v1/traces", {"spans": [span]})).status_code == 201
    async with db.engine.connect() as deleter, db.engine.connect() as writer:
        await deleter.execute(text("DELETE FROM webhooks WHERE id = :id"), {"id": hook["id"]})  # uncommitted
        writer_pid = await backend_pid(writer)

        async def write() -> None:
            # An event the webhook asked for (trace.completed): the trigger reads the webhook.
            await writer.execute(text("UPDATE traces SET status = 'ok' WHERE trace_id = :t"), {"t": trace_id})
            await writer.commit()

        written = asyncio.create_task(write())
        await until_waiting_for_a_lock(db, writer_pid)  # on the DELETE's lock of the webhook
        await deleter.commit()
        await written  # raised ForeignKeyViolation before the webhook was locked as it was read
    async with db.session() as s:
        assert (await s.execute(select(WebhookDelivery))).first() is None
        status = await s.scalar(text("SELECT status FROM traces WHERE trace_id = :t"), {"t": trace_id})
    assert status == "ok"


async def test_an_attempt_recorded_while_its_webhook_is_deleted_does_not_deadlock(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    """A failed attempt's record writes the webhook (its failure clock). It locked the delivery
    first and the webhook second, while a webhook's DELETE locks the webhook and then (cascade) the
    delivery: with both half-way, PostgreSQL aborted one of them (DeadlockDetected). Both now lock
    the webhook first: the record waits for the DELETE and then finds nothing."""
    _, alice, _ = await users(client)
    hook = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL})).json()
    delivery = (await alice.post(f"/v1/webhooks/{hook['id']}/test", {})).json()
    async with db.engine.connect() as deleter, db.session() as recorder:
        # The lock a DELETE takes first, held while the attempt's record starts.
        await deleter.execute(text("SELECT 1 FROM webhooks WHERE id = :id FOR UPDATE"), {"id": hook["id"]})
        recorder_pid = await backend_pid(await recorder.connection())
        recorded = asyncio.create_task(
            webhooks.record_attempt(
                recorder,
                uuid.UUID(delivery["id"]),
                1,
                status_code=500,
                error="HTTP 500",
                next_wait_s=60.0,
                disable_after_s=3600.0,
            )
        )
        await until_waiting_for_a_lock(db, recorder_pid)
        await deleter.execute(text("DELETE FROM webhooks WHERE id = :id"), {"id": hook["id"]})
        await deleter.commit()
        assert await recorded == "done"
    async with db.session() as s:
        assert (await s.execute(select(WebhookDelivery))).first() is None


async def test_a_session_event_with_no_webhook_anywhere_reads_no_agent(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    """The session-event trigger looked the session's agent up (for its owner) before asking
    whether there was any webhook at all: two lookups per turn end for nothing. Now, with no active
    webhook anywhere, it reads neither; with one (anyone's), it does."""
    _, alice, bob = await users(client)
    provider = (await alice.post("/v1/llm-providers", {"name": "Sim", "provider_type": "simulator"})).json()
    model = (await alice.post(f"/v1/llm-providers/{provider['id']}/models", {"model_id": "sim-1"})).json()
    agent = (
        await alice.post("/v1/agents", {"name": "A", "system_prompt": "x", "default_model_id": model["id"]})
    ).json()
    session_id = uuid.UUID((await alice.post(f"/v1/agents/{agent['id']}/sessions", {})).json()["id"])
    reads_of_agents = text(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
        " WHERE relname = 'agents'"
    )

    async def agent_reads_of_storing(payload: ev.EventData) -> int:
        """How many times storing the event read `agents` (this transaction's counts)."""
        async with db.session() as s:
            before = await s.scalar(reads_of_agents)
            await events.append(s, session_id, payload, context={"turn_id": "t1"})
            after = await s.scalar(reads_of_agents)
            await s.commit()
        assert isinstance(before, int) and isinstance(after, int)
        return after - before

    not_watched = ev.TurnStarted(turn_id="t1", input_message_id="m1")  # no trigger fires for it
    watched = ev.SessionIdled(turn_id="t1", iterations=1)
    baseline = await agent_reads_of_storing(not_watched)
    assert await agent_reads_of_storing(watched) == baseline
    (await bob.post("/v1/webhooks", {"url": PUBLIC_URL})).json()  # someone else's: alice's owner is looked up
    assert await agent_reads_of_storing(watched) == baseline + 1
    async with db.session() as s:
        assert (await s.execute(select(WebhookDelivery))).first() is None


async def test_an_attempt_writing_its_webhook_while_a_delete_waits_for_it_does_not_deadlock(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    """The other interleaving of record_attempt's locks: it holds KEY SHARE on the webhook, a
    DELETE queues for the webhook, then the attempt writes the webhook (its failure clock). KEY
    SHARE upgraded to the UPDATE's lock does not queue behind the DELETE: the attempt commits,
    then the DELETE runs."""
    _, alice, _ = await users(client)
    hook = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL})).json()
    params = {"id": hook["id"]}
    async with db.engine.connect() as attempt, db.engine.connect() as deleter:
        await attempt.execute(text("SELECT 1 FROM webhooks WHERE id = :id FOR KEY SHARE"), params)
        deleter_pid = await backend_pid(deleter)

        async def delete() -> None:
            await deleter.execute(text("DELETE FROM webhooks WHERE id = :id"), params)
            await deleter.commit()

        deleted = asyncio.create_task(delete())
        await until_waiting_for_a_lock(db, deleter_pid)
        async with asyncio.timeout(10):
            await attempt.execute(text("UPDATE webhooks SET failing_since = now() WHERE id = :id"), params)
            await attempt.commit()
        await deleted
    async with db.session() as s:
        assert await s.get(Webhook, uuid.UUID(hook["id"])) is None


async def test_a_webhook_deleted_while_the_loop_stores_a_turns_end_does_not_fail_the_store(
    client: AsyncTestClient[Litestar], db: Database
) -> None:
    """The same race on the loop's own write: a session event stored as the loop stores it
    (`events.append`) while its owner's webhook is being deleted."""
    _, alice, _ = await users(client)
    hook = (await alice.post("/v1/webhooks", {"url": PUBLIC_URL})).json()
    provider = (await alice.post("/v1/llm-providers", {"name": "Sim", "provider_type": "simulator"})).json()
    model = (await alice.post(f"/v1/llm-providers/{provider['id']}/models", {"model_id": "sim-1"})).json()
    agent = (
        await alice.post("/v1/agents", {"name": "A", "system_prompt": "x", "default_model_id": model["id"]})
    ).json()
    session_id = uuid.UUID((await alice.post(f"/v1/agents/{agent['id']}/sessions", {})).json()["id"])
    async with db.engine.connect() as deleter, db.session() as loop:
        await deleter.execute(text("DELETE FROM webhooks WHERE id = :id"), {"id": hook["id"]})  # uncommitted
        loop_pid = await backend_pid(await loop.connection())

        async def store() -> None:
            idled = ev.SessionIdled(turn_id="t1", iterations=1)
            await events.append(loop, session_id, idled, context={"turn_id": "t1"})
            await loop.commit()

        stored = asyncio.create_task(store())
        await until_waiting_for_a_lock(db, loop_pid)
        await deleter.commit()
        await stored
    async with db.session() as s:
        assert (await s.execute(select(WebhookDelivery))).first() is None
        assert (
            await s.scalar(text("SELECT count(*) FROM events WHERE session_id = :s"), {"s": session_id}) == 1
        )
