from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from core import bus
from core.db import Database
from core.db.models import Event
from everloop.stack import Endpoints
from services.events import channel
from tests import factories
from tests.factories import Client

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()


async def _session(client: Client) -> str:
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    return f"/v1/agents/{agent['id']}/sessions/{session['id']}"


async def test_post_stores_the_message_and_its_event(client: Client, db: Database) -> None:
    base = await _session(client)
    body = factories.text_message(
        "What is 2+2?", controls={"reasoning": {"effort": "low"}}, metadata={"client": "t"}, tags=["q"]
    )
    response = await client.post(f"{base}/messages", json=body)
    assert response.status_code == 201, response.text
    message = response.json()
    assert message["role"] == "user"
    assert message["sequence"] == 1
    assert message["content"] == [{"type": "text", "text": "What is 2+2?"}]
    assert message["controls"] == {"model_id": None, "reasoning": {"effort": "low"}}
    assert message["metadata"] == {"client": "t"}
    assert message["tool_calls"] is None and message["tool_results"] is None
    async with db.session() as s:
        events = (await s.execute(select(Event))).scalars().all()
    assert [(e.type, e.sequence) for e in events] == [("message.user", 1)]
    assert events[0].data["message"]["id"] == message["id"]
    assert events[0].context == {"input_message_id": message["id"]}


async def test_the_event_is_published_on_the_session_channel(client: Client, endpoints: Endpoints) -> None:
    base = await _session(client)
    session_id = uuid.UUID(base.rsplit("/", 1)[1])
    redis = bus.connect(endpoints.redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel(session_id))
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    try:
        posted = (await client.post(f"{base}/messages", json=factories.text_message("hi"))).json()
        received = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert received is not None
        event = msgspec.json.decode(received["data"])
        assert event["type"] == "message.user"
        assert event["session_id"] == str(session_id)
        assert event["data"]["message"]["id"] == posted["id"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


async def test_messages_list_in_sequence_order(client: Client) -> None:
    base = await _session(client)
    texts = [f"m{i}" for i in range(5)]
    for text in texts:
        assert (await client.post(f"{base}/messages", json=factories.text_message(text))).status_code == 201
    listing = (await client.get(f"{base}/messages", params={"limit": 3})).json()
    assert [m["content"][0]["text"] for m in listing["data"]] == texts[:3]
    assert [m["sequence"] for m in listing["data"]] == [1, 2, 3]
    assert listing["total"] == 5


async def test_concurrent_posts_get_distinct_gap_free_sequences(client: Client, db: Database) -> None:
    base = await _session(client)
    responses = await asyncio.gather(
        *(client.post(f"{base}/messages", json=factories.text_message(str(i))) for i in range(12))
    )
    assert all(r.status_code == 201 for r in responses)
    assert sorted(r.json()["sequence"] for r in responses) == list(range(1, 13))
    async with db.session() as s:
        sequences = (await s.execute(select(Event.sequence).order_by(Event.sequence))).scalars().all()
    assert list(sequences) == list(range(1, 13))


async def test_idempotency_key_returns_the_first_message(client: Client, db: Database) -> None:
    base = await _session(client)
    body = factories.text_message("only once")
    headers = {"Idempotency-Key": "retry-123"}
    first = await client.post(f"{base}/messages", json=body, headers=headers)
    again = await client.post(f"{base}/messages", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert (await client.get(f"{base}/messages")).json()["total"] == 1
    async with db.session() as s:
        assert len((await s.execute(select(Event))).scalars().all()) == 1
    different = await client.post(f"{base}/messages", json=factories.text_message("else"), headers=headers)
    assert different.status_code == 409
    other_key = await client.post(f"{base}/messages", json=body, headers={"Idempotency-Key": "retry-456"})
    assert other_key.json()["id"] != first.json()["id"]


async def test_concurrent_retries_with_one_key_store_one_message(client: Client) -> None:
    base = await _session(client)
    body = factories.text_message("racing")
    responses = await asyncio.gather(
        *(client.post(f"{base}/messages", json=body, headers={"Idempotency-Key": "same"}) for _ in range(6))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert (await client.get(f"{base}/messages")).json()["total"] == 1


async def test_images_by_url_and_base64(client: Client) -> None:
    base = await _session(client)
    content = [
        {"type": "text", "text": "look"},
        {"type": "image", "url": "https://example.com/cat.png"},
        {"type": "image", "base64": PNG, "media_type": "image/png"},
    ]
    response = await client.post(f"{base}/messages", json={"message": {"role": "user", "content": content}})
    assert response.status_code == 201, response.text
    assert response.json()["content"][2] == {
        "type": "image",
        "url": None,
        "base64": PNG,
        "media_type": "image/png",
    }


def _content(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"message": {"role": "user", "content": list(parts)}}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/cat.png", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://[::1]:8000/cat.png", "::1 is a loopback address"),
        (
            "http://[::ffff:192.168.1.1]/cat.png",
            "::ffff:c0a8:101 is a private address wrapped in IPv6 (192.168.1.1)",
        ),
        # A name: the kind of address it resolves to, never the address (it would map the network).
        ("http://localhost:8000/cat.png", "localhost resolves to a loopback address"),
        ("https://example.com:99999/cat.png", "not a valid URL"),
    ],
)
async def test_an_image_url_this_server_refuses_is_a_400_when_posted(
    client: Client, url: str, reason: str
) -> None:
    base = await _session(client)
    body = _content({"type": "text", "text": "look"}, {"type": "image", "url": url})
    response = await client.post(f"{base}/messages", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "message.content[1].url"
    assert response.json()["error"] == (
        f"message.content[1].url: refused by this server: {reason} (an image must be on a public "
        "internet address)"
    )
    assert (await client.get(f"{base}/messages")).json()["total"] == 0


async def test_an_image_url_that_does_not_resolve_here_is_left_to_the_turn(client: Client) -> None:
    """No answer from DNS is not a refusal: the turn checks again, and a provider that fetches the
    image itself resolves it on its own network."""
    base = await _session(client)
    for url in ("https://1.1.1.1/cat.png", "https://no-such-host.invalid/cat.png"):
        response = await client.post(f"{base}/messages", json=_content({"type": "image", "url": url}))
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_content(), "message.content"),
        (_content({"type": "tool_call", "id": "c1", "name": "add", "arguments": {}}), "message.content[0]"),
        (_content({"type": "tool_result", "tool_call_id": "c1", "result": 1}), "message.content[0]"),
        (_content({"type": "video", "url": "https://x"}), "message.content[0].type"),
        (_content({"type": "image"}), "message.content[0]"),
        (
            _content({"type": "image", "url": "https://x", "base64": PNG, "media_type": "image/png"}),
            "message.content[0]",
        ),
        (_content({"type": "image", "url": "file:///etc/passwd"}), "message.content[0].url"),
        (
            _content({"type": "image", "base64": PNG, "media_type": "image/svg+xml"}),
            "message.content[0].media_type",
        ),
        (_content({"type": "image", "base64": PNG}), "message.content[0].media_type"),
        (
            _content({"type": "image", "base64": "not base64!", "media_type": "image/png"}),
            "message.content[0].base64",
        ),
        (
            _content({"type": "image", "base64": "A" * (7 * 1024 * 1024), "media_type": "image/png"}),
            "message.content[0].base64",
        ),
        (_content({"type": "text"}), "message.content[0].text"),
        ({"message": {"role": "agent", "content": [{"type": "text", "text": "x"}]}}, "message.role"),
        (
            {"message": {"content": [{"type": "text", "text": "x"}]}, "controls": {"model_id": "bad"}},
            "controls.model_id",
        ),
        (
            {
                "message": {"content": [{"type": "text", "text": "x"}]},
                "controls": {"reasoning": {"effort": "max"}},
            },
            "controls.reasoning.effort",
        ),
        (
            {
                "message": {"content": [{"type": "text", "text": "x"}]},
                "controls": {"model_id": str(uuid.uuid4())},
            },
            "controls.model_id",
        ),
        ({"content": []}, "content"),
    ],
)
async def test_bad_messages_are_400_with_the_reason(client: Client, body: dict[str, Any], field: str) -> None:
    base = await _session(client)
    response = await client.post(f"{base}/messages", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field, response.json()
    assert (await client.get(f"{base}/messages")).json()["total"] == 0


async def test_a_base64_image_of_exactly_5_mb_is_accepted(client: Client) -> None:
    base = await _session(client)
    image = base64.b64encode(b"\x00" * (5 * 1024 * 1024)).decode()
    response = await client.post(
        f"{base}/messages", json=_content({"type": "image", "base64": image, "media_type": "image/jpeg"})
    )
    assert response.status_code == 201


async def test_malformed_json_stores_nothing(client: Client) -> None:
    base = await _session(client)
    response = await client.post(
        f"{base}/messages", content=b'{"message": {"content": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert (await client.get(f"{base}/messages")).json()["total"] == 0


async def test_nul_characters_are_a_400_not_a_crash(client: Client) -> None:
    base = await _session(client)
    response = await client.post(f"{base}/messages", json=factories.text_message("a\u0000b"))
    assert response.status_code == 400
    assert "NUL" in response.json()["error"]
    agent = await client.post("/v1/agents", json={"name": "nul\u0000name"})
    assert agent.status_code == 400
    assert (await client.get(f"{base}/messages")).json()["total"] == 0
