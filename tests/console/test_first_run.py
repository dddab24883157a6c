"""The first run, as `make dev` gives it: AUTH_MODE=none (no sign-in), the seed's Demo agent on the
simulator's tool-using default model, and a newcomer's first question in the console's chat: the
model calls the agent's `multiply` tool with the numbers from the question, and answers from its
result. No API key anywhere; the screenshot is the README's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect
from temporalio.client import Client

from core import bus
from core.db import Database
from everloop.seed import DEMO_AGENT_NAME, SIMULATOR_NAME, seed_dev_data
from everloop.stack import Endpoints
from everloop.worker import build_worker
from tests.apps import app_for
from tests.conftest import make_settings
from tests.console.conftest import WAIT_MS, shot, watch_errors
from tests.servers import Server, running


@pytest.fixture
async def dev(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> AsyncIterator[Server]:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    assert await seed_dev_data(endpoints.database_url, settings)  # an empty database: it seeds
    redis = bus.connect(endpoints.redis_url)
    try:
        with running(app_for(settings, configure_logs=False)) as server:
            async with (
                build_worker(temporal_client, settings, db, redis),
                httpx.AsyncClient(base_url=server.url) as http,
            ):
                # The seed's provider calls this server's own simulator (`make dev` knows its port
                # beforehand; a test server learns it on start): the same simulator, over HTTP.
                [provider] = [
                    p for p in (await http.get("/v1/llm-providers")).json() if p["name"] == SIMULATOR_NAME
                ]
                moved = await http.patch(
                    f"/v1/llm-providers/{provider['id']}", json={"base_url": simulator_url}
                )
                assert moved.status_code == 200, moved.text
                yield server
    finally:
        await redis.aclose()


async def test_a_newcomer_asks_the_demo_agent_and_sees_it_use_a_tool(browser: Browser, dev: Server) -> None:
    context = await browser.new_context(base_url=dev.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto("/")
    # No sign-in in AUTH_MODE=none: straight to the chat, the seeded agent offered.
    await expect(page.get_by_role("navigation", name="Console")).to_be_visible()
    await expect(page.get_by_label("Password")).to_have_count(0)
    await page.get_by_text(DEMO_AGENT_NAME).first.click()
    box = page.get_by_label("Message", exact=True)
    await box.fill("What is 12 times 7?")
    await box.press("Enter")
    transcript = page.get_by_role("list", name="Conversation")
    await expect(transcript.get_by_text("multiply", exact=True)).to_be_visible()
    await expect(transcript.get_by_text("The result of multiply is 84.")).to_be_visible()
    await expect(transcript.get_by_text('{"a":12,"b":7}')).to_be_visible()
    await expect(page.get_by_role("button", name="Cancel")).to_have_count(0)  # the turn is over
    await shot(page, "first-run")
    await context.close()
    assert not errors, errors
