"""A second user, signed in to the same console, sees nothing of the first's: not in any list, and
not through a direct link to one of the first user's agents, sessions or turns (the API answers 404,
and the console shows that, never the resource). The console reads only through the public API, so
this is the API's owner checks seen through the browser."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, expect

from tests.clients.conftest import Everloop
from tests.console.conftest import new_context, shot, sign_in, watch_errors
from tests.sse import SSE

SECRET = "Alice's private agent"
SECRET_PROMPT = "alice-only-system-prompt"
TURN_ENDS = {"turn.completed", "turn.failed", "turn.cancelled"}


async def _a_turn(everloop: Everloop) -> tuple[str, str, str]:
    """The admin's agent, a session and one finished turn: (agent, session, turn) ids."""
    http = everloop.http
    agent = (
        await http.post(
            "/v1/agents",
            json={"name": SECRET, "system_prompt": SECRET_PROMPT, "default_model_id": everloop.model_id},
        )
    ).json()
    session = (await http.post(f"/v1/agents/{agent['id']}/sessions", json={"title": "alice's chat"})).json()
    base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
    async with http.stream("GET", f"{base}/sse") as response:
        frames = SSE(response)
        sent = await http.post(
            f"{base}/messages",
            json={"message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}},
        )
        assert sent.status_code == 201, sent.text
        while (frame := await frames.event(timeout=30)).event not in TURN_ENDS:
            pass
    assert frame.event == "turn.completed", frame
    return agent["id"], session["id"], frame.json()["data"]["turn_id"]


async def test_a_second_user_sees_nothing_of_the_first(browser: Browser, everloop: Everloop) -> None:
    agent_id, session_id, turn_id = await _a_turn(everloop)

    # The control: its owner sees it in the same views Bob walks below (so "not shown" below means
    # "not his", not "not shown at all").
    owner = await new_context(browser, everloop)
    await sign_in(owner, everloop.email, everloop.password)
    mine = await owner.new_page()
    for view in ["agents", "sessions", "traces"]:
        await mine.goto(f"/#/{view}")
        await expect(mine.locator("main")).to_contain_text(SECRET)
    await owner.close()

    context = await new_context(browser, everloop)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto("/")
    # Bob opens his own account from the sign-in page (registration is open in this deployment).
    await page.get_by_role("button", name="No account? Create one").click()
    await page.get_by_label("Email").fill("bob@example.com")
    await page.get_by_label("Password").fill("bob's password")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_text("bob@example.com")).to_be_visible()

    for view in [
        "chat",
        "agents",
        "providers",
        "mcp",
        "sessions",
        "traces",
        "replays",
        "golden",
        "drift",
        "usage",
    ]:
        await page.goto(f"/#/{view}")
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        await page.wait_for_load_state("networkidle")
        body = await page.locator("main").inner_text()
        assert SECRET not in body and agent_id not in body and session_id not in body, (view, body[:500])

    for link in [
        f"agents/{agent_id}",
        f"chat/{agent_id}/{session_id}",
        f"sessions/{agent_id}/{session_id}",
        f"traces/{turn_id}",
    ]:
        await page.goto(f"/#/{link}")
        await expect(page.get_by_role("alert").first).to_be_visible()
        body = await page.locator("main").inner_text()
        assert SECRET not in body and SECRET_PROMPT not in body, (link, body[:500])
        assert "not found" in body.lower(), (link, body[:500])
    await shot(page, "isolation-not-found")

    # And the API agrees: the same cookie reaches nothing of the admin's.
    cookies = {c["name"]: c["value"] for c in await context.cookies() if c["name"] == "access_token"}
    async with httpx.AsyncClient(base_url=everloop.url, cookies=cookies) as bob:
        assert (await bob.get(f"/v1/agents/{agent_id}")).status_code == 404
        assert SECRET not in (await bob.get("/v1/agents")).text
    await context.close()
    assert not errors, errors
