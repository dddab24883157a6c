"""The console's page and shell: served at `/` with a strict Content-Security-Policy and no
credential, its files under `/console/`, sign-in and API keys in AUTH_MODE=full, and nothing of one
user shown to another."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Browser, Page, expect

from tests.clients.conftest import Everloop
from tests.console.conftest import new_context, shot, sign_in, watch_errors


async def test_the_page_is_served_without_a_credential_with_a_strict_policy(everloop: Everloop) -> None:
    async with httpx.AsyncClient(base_url=everloop.url) as anon:
        page = await anon.get("/", headers={"accept-encoding": "gzip"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert page.headers["content-encoding"] == "gzip"
        module = await anon.get("/console/app.js")
        assert module.status_code == 200
        assert "javascript" in module.headers["content-type"]
        assert module.headers["cache-control"] == "no-cache"
        # Files only: the console's routes hold no data, and nothing outside its directory is served.
        assert (await anon.get("/console/%2e%2e/core/settings.py")).status_code == 404
        assert (await anon.get("/v1/agents")).status_code == 401


async def test_sign_in_and_an_api_key_that_works_once_shown(browser: Browser, everloop: Everloop) -> None:
    context = await new_context(browser, everloop)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Everloop")).to_be_visible()
    await shot(page, "signin")
    await page.get_by_label("Email").fill(everloop.email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await page.get_by_label("Password").fill(everloop.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("navigation", name="Console")).to_be_visible()

    await page.goto("/#/account")
    await expect(page.get_by_role("heading", name="Account")).to_be_visible()
    await page.get_by_label("Key name").fill("from the console")
    await page.get_by_role("button", name="Create key").click()
    key = await page.get_by_test_id("new-key").inner_text()
    assert re.fullmatch(r"evr_[0-9a-f]{64}", key)
    await expect(page.get_by_role("cell", name="from the console", exact=True)).to_be_visible()
    await shot(page, "account")
    async with httpx.AsyncClient(base_url=everloop.url, headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.get("/v1/agents")).status_code == 200
        page.once("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name="Revoke from the console").click()
        await expect(page.get_by_role("cell", name="from the console", exact=True)).to_have_count(0)
        assert (await client.get("/v1/agents")).status_code == 401

    await page.get_by_role("button", name="Sign out").first.click()
    await expect(page.get_by_label("Password")).to_be_visible()
    await page.reload()
    await expect(page.get_by_label("Password")).to_be_visible()  # the sign-in is over, not hidden
    await context.close()
    assert not errors, errors


async def test_every_view_opens_without_a_script_error(page: Page) -> None:
    for view, heading in [
        ("chat", "Chat"),
        ("agents", "Agents"),
        ("providers", "Providers & models"),
        ("mcp", "MCP servers"),
        ("sessions", "Sessions"),
        ("traces", "Traces"),
        ("replays", "Replays"),
        ("golden", "Golden tests"),
        ("drift", "Drift"),
        ("usage", "Usage & cost"),
        ("account", "Account"),
    ]:
        await page.goto(f"/#/{view}")
        await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        await page.wait_for_load_state("networkidle")
        assert await unnamed_controls(page) == [], view


async def unnamed_controls(page: Page) -> list[str]:
    """Form controls and buttons a screen reader could not name (no label, no aria-label, no text)."""
    found: list[str] = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button, a[href]")]
            .filter((el) => el.type !== "hidden" && el.offsetParent !== null)
            .filter((el) => !(
                (el.labels && el.labels.length) || el.getAttribute("aria-label") ||
                el.getAttribute("aria-labelledby") || el.getAttribute("title") ||
                (["BUTTON", "A"].includes(el.tagName) && el.textContent.trim())
            ))
            .map((el) => el.outerHTML.slice(0, 120))"""
    )
    return found


async def test_a_phone_width_window_folds_the_navigation_behind_a_menu(
    browser: Browser, everloop: Everloop
) -> None:
    context = await new_context(browser, everloop, width=390)
    await sign_in(context, everloop.email, everloop.password)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto("/#/account")
    await expect(page.get_by_role("heading", name="Account")).to_be_visible()
    navigation = page.get_by_role("navigation", name="Console")
    await expect(navigation).to_be_hidden()
    menu = page.get_by_role("button", name="Menu")
    await menu.focus()
    await page.keyboard.press("Enter")  # the keyboard opens it, as a click would
    await expect(navigation).to_be_visible()
    await expect(menu).to_have_attribute("aria-expanded", "true")
    await page.keyboard.press("Escape")  # Escape closes it and gives focus back to its button
    await expect(navigation).to_be_hidden()
    await expect(menu).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(navigation).to_be_visible()
    await navigation.get_by_role("link", name="Agents").click()
    await expect(page.get_by_role("heading", name="Agents", exact=True)).to_be_visible()
    await expect(navigation).to_be_hidden()  # choosing a view closes it
    width = await page.evaluate("document.documentElement.scrollWidth")
    wide = await page.evaluate(
        "[...document.querySelectorAll('*')].filter((e) => e.getBoundingClientRect().right > 390)"
        ".map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
    )
    assert width <= 390, f"the page scrolls sideways at phone width ({width}px): {wide}"
    await shot(page, "phone-agents")
    await context.close()
    assert not errors, errors
