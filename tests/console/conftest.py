"""The web console in a real browser: Debian's chromium (Playwright) against the whole stack (the
API with the console, a worker on its own task queue, the simulator as the LLM), in AUTH_MODE=full
with the admin signed in, as a deployment would run it.

`page` fails its test on any uncaught JavaScript error, so a view that breaks shows up even where a
test does not look at it. `shot(page, name)` saves a screenshot under .everloop-artifacts/console/
(looked at by hand; docs/console.md's two images, one also in the README, are copied from there:
docs/images/console-*.png)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser import chromium
from tests.clients.conftest import Everloop
from tests.clients.conftest import everloop as clients_everloop

ARTIFACTS = Path(__file__).resolve().parents[2] / ".everloop-artifacts" / "console"
WAIT_MS = 30_000
# Playwright's `expect` waits 5 s by default, whatever the context's timeout: on two busy cores a
# first view (or a first drift run) can take longer, and a wait is not a sleep: it ends when it holds.
expect.set_options(timeout=15_000)


# The whole stack with its admin signed in: the same fixture as Everruns' clients' tests.
everloop = clients_everloop


# One chromium for the worker's whole run (launching it costs a second or two of CPU): each test
# has its own context (cookies, storage, pages), which is what keeps tests apart.
@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def new_context(
    browser: Browser, everloop: Everloop, *, width: int = 1280, height: int = 860, base_url: str | None = None
) -> BrowserContext:
    """`base_url`: where the browser reaches the server (default: the server itself)."""
    context = await browser.new_context(
        base_url=base_url or everloop.url, viewport={"width": width, "height": height}
    )
    context.set_default_timeout(WAIT_MS)
    return context


async def sign_in(context: BrowserContext, email: str, password: str) -> None:
    """Signs the browser in through the API (the cookies land in the context), as the form would."""
    answer = await context.request.post("/api/auth/login", data={"email": email, "password": password})
    assert answer.status == 200, await answer.text()


def watch_errors(page: Page) -> list[str]:
    """Uncaught errors of the page's scripts, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@asynccontextmanager
async def admin_page(browser: Browser, everloop: Everloop, **options: Any) -> AsyncIterator[Page]:
    """A page signed in as the stack's admin (who owns its simulator model); `options` go to
    `new_context`. Fails on leaving if any of the page's scripts failed."""
    context = await new_context(browser, everloop, **options)
    await sign_in(context, everloop.email, everloop.password)
    opened = await context.new_page()
    errors = watch_errors(opened)
    yield opened
    await context.close()
    assert not errors, f"the console's scripts failed: {errors}"


@pytest.fixture
async def page(browser: Browser, everloop: Everloop) -> AsyncIterator[Page]:
    async with admin_page(browser, everloop) as opened:
        yield opened


async def shot(page: Page, name: str) -> Path:
    """A screenshot of the page as it is, saved as an artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
