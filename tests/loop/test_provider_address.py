"""A user's provider is checked again when it is called: a base_url whose name now resolves to a
private address (DNS changed since it was set) fails the turn instead of reaching inside."""

from __future__ import annotations

import uuid

from litestar import Litestar, Response, get, post
from sqlalchemy import update

from core.db.models import LlmProvider
from core.identity import BUILTIN_ADMIN_ID
from tests.loop.conftest import Loop
from tests.servers import running


async def test_a_users_provider_pointing_inside_fails_the_turn(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "hello"})
    agent = (await loop.client.get(base.rsplit("/sessions/", 1)[0])).json()
    model = (await loop.client.get(f"/v1/llm-models/{agent['default_model_id']}")).json()
    # As if a user had set a public base_url whose name now resolves to 127.0.0.1.
    async with loop.db.session() as s:
        await s.execute(
            update(LlmProvider)
            .where(LlmProvider.id == uuid.UUID(model["provider_id"]))
            .values(owner_id=BUILTIN_ADMIN_ID)
        )
        await s.commit()
    frames = await loop.send(base, "hi")
    failed = frames[-1]
    assert failed["type"] == "turn.failed", [f["type"] for f in frames]
    assert failed["data"]["error_code"] == "provider_address_refused"
    assert "127.0.0.1 is a loopback address" in failed["data"]["error"]
    assert not [f for f in frames if f["type"] == "output.message.delta"]  # the LLM was never called


async def _make_users(loop: Loop, base: str, base_url: str | None = None) -> None:
    agent = (await loop.client.get(base.rsplit("/sessions/", 1)[0])).json()
    model = (await loop.client.get(f"/v1/llm-models/{agent['default_model_id']}")).json()
    values: dict[str, object] = {"owner_id": BUILTIN_ADMIN_ID}
    if base_url is not None:
        values["base_url"] = base_url
    async with loop.db.session() as s:
        await s.execute(
            update(LlmProvider).where(LlmProvider.id == uuid.UUID(model["provider_id"])).values(**values)
        )
        await s.commit()


async def test_a_users_provider_is_called_through_the_pinned_client(loopback_loop: Loop) -> None:
    loop = loopback_loop
    base = await loop.chat(simulator={"mode": "fixed", "text": "pinned hello"})
    await _make_users(loop, base)
    frames = await loop.send(base, "hi")
    assert frames[-1]["type"] == "turn.completed", frames[-1]
    deltas = "".join(f["data"]["delta"] for f in frames if f["type"] == "output.message.delta")
    assert deltas == "pinned hello"


async def test_a_users_provider_does_not_follow_redirects(loopback_loop: Loop) -> None:
    loop = loopback_loop
    base = await loop.chat(simulator={"mode": "fixed", "text": "never"})

    @post("/v1/chat/completions", status_code=307)
    async def elsewhere() -> Response[None]:
        # Where a hostile endpoint would send the worker: an internal service, here the simulator.
        return Response(None, status_code=307, headers={"location": f"{loop.simulator_url}/chat/completions"})

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    with running(Litestar([elsewhere, health])) as redirector:
        await _make_users(loop, base, f"{redirector.url}/v1")
        frames = await loop.send(base, "hi")
    assert frames[-1]["type"] == "turn.failed", frames[-1]
    assert "redirects elsewhere, which is not followed (HTTP 307)" in frames[-1]["data"]["error"]
    assert not [f for f in frames if f["type"] == "output.message.delta"]


async def test_an_admins_provider_may_point_inside(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "hello"})
    frames = await loop.send(base, "hi")
    assert frames[-1]["type"] == "turn.completed"


async def test_a_users_provider_of_an_unpinnable_type_with_a_base_url_fails_the_turn(loop: Loop) -> None:
    """Rows from before users were limited to OpenAI-wire types for base_url: refused at call time."""
    base = await loop.chat(simulator={"mode": "fixed", "text": "never"})
    await _make_users(loop, base, "https://proxy.example.com")
    agent = (await loop.client.get(base.rsplit("/sessions/", 1)[0])).json()
    model = (await loop.client.get(f"/v1/llm-models/{agent['default_model_id']}")).json()
    async with loop.db.session() as s:
        await s.execute(
            update(LlmProvider)
            .where(LlmProvider.id == uuid.UUID(model["provider_id"]))
            .values(provider_type="anthropic")
        )
        await s.commit()
    frames = await loop.send(base, "hi")
    assert frames[-1]["type"] == "turn.failed"
    assert frames[-1]["data"]["error_code"] == "provider_address_refused"
    assert "anthropic provider may not set base_url" in frames[-1]["data"]["error"]
