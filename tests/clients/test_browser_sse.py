"""A real browser (Debian's chromium through Playwright) on a page of another origin, as Everruns'
web UI runs beside its API: it signs in with a cross-origin `fetch` (the API's cookies), then
follows a session with `EventSource(..., {withCredentials: true})` on `/sse`. CORS and the cookies
must let it in, and every frame of a real turn must reach the page."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser
from temporalio.client import Client

from core.db import Database
from everloop.stack import Endpoints
from tests.browser import chromium
from tests.clients.conftest import Everloop, serving
from tests.servers import Server

PAGE = b"<!doctype html><html><head><title>console</title></head><body>a page of another origin</body></html>"
WAIT_MS = 30_000


async def _page_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Serves one blank HTML page: the origin the browser's scripts run from."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": PAGE})


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def page_origin() -> AsyncIterator[str]:
    async with Server(_page_app, health_path=None) as server:
        yield server.url


@pytest.fixture
async def stack(
    endpoints: Endpoints,
    db: Database,
    temporal_client: Client,
    simulator_url: str,
    task_queue: str,
    page_origin: str,
) -> AsyncIterator[Everloop]:
    async with serving(
        endpoints, db, temporal_client, simulator_url, task_queue, CORS_ORIGINS=page_origin
    ) as everloop:
        yield everloop


async def test_event_source_with_cookies_across_origins(
    browser: Browser, page_origin: str, stack: Everloop
) -> None:
    settings = {"mode": "fixed", "text": "Hello, browser"}
    patched = await stack.http.patch(f"/v1/llm-models/{stack.model_id}", json={"settings": settings})
    assert patched.status_code == 200, patched.text
    created = await stack.http.post("/v1/agents", json={"name": "web", "default_model_id": stack.model_id})
    agent = created.json()
    session = (await stack.http.post(f"/v1/agents/{agent['id']}/sessions", json={})).json()
    sse = f"{stack.url}/v1/agents/{agent['id']}/sessions/{session['id']}/sse"

    page = await browser.new_page()
    await page.goto(page_origin)
    signed_in = await page.evaluate(
        """async ([api, email, password]) => {
            const response = await fetch(api + "/v1/auth/login", {
                method: "POST", credentials: "include",
                headers: {"content-type": "application/json"},
                body: JSON.stringify({email, password}),
            });
            return response.status;
        }""",
        [stack.url, stack.email, stack.password],
    )
    assert signed_in == 200

    # Without credentials the stream is refused (401): the cookies are what let the page in.
    refused = await page.evaluate(
        """(url) => new Promise((resolve) => {
            const source = new EventSource(url);
            source.onopen = () => { source.close(); resolve("opened"); };
            source.onerror = () => { source.close(); resolve("refused"); };
        })""",
        sse,
    )
    assert refused == "refused"

    opened = await page.evaluate(
        """(url) => new Promise((resolve, reject) => {
            window.frames_seen = [];
            const source = new EventSource(url, {withCredentials: true});
            window.source = source;
            const keep = (kind) => (event) => window.frames_seen.push(
                {kind, id: event.lastEventId, data: JSON.parse(event.data)});
            source.addEventListener("connected", (event) => { keep("connected")(event); resolve("open"); });
            for (const type of ["message.user", "output.message.delta", "message.agent",
                                "output.message.completed", "turn.completed", "session.idled"]) {
                source.addEventListener(type, keep(type));
            }
            source.onerror = () => reject(new Error("the stream failed"));
        })""",
        sse,
    )
    assert opened == "open"

    sent = await stack.http.post(
        f"/v1/agents/{agent['id']}/sessions/{session['id']}/messages",
        json={"message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}},
    )
    assert sent.status_code == 201, sent.text
    await page.wait_for_function(
        "window.frames_seen.some((f) => f.kind === 'session.idled')", timeout=WAIT_MS
    )
    frames = await page.evaluate("window.frames_seen")
    await page.evaluate("window.source.close()")
    kinds = [f["kind"] for f in frames]
    assert kinds[0] == "connected"
    assert kinds.index("message.user") < kinds.index("message.agent") < kinds.index("turn.completed")
    text = "".join(f["data"]["data"]["delta"] for f in frames if f["kind"] == "output.message.delta")
    assert text == "Hello, browser"
    # Every stored event arrives with its id, which is what the browser resumes from (Last-Event-ID).
    stored = [f for f in frames if f["kind"] in {"message.user", "message.agent", "turn.completed"}]
    assert all(f["id"] == f["data"]["id"] for f in stored), json.dumps(stored)[:500]
