"""The console's chat in a real browser against the whole stack: a turn with a tool call and a
streamed reply, a network cut in the middle of a reply (the page reconnects from its last frame and
shows the reply once, whole), and a tool call that waits for the user's approval."""

from __future__ import annotations

import re
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, FilePayload, Page, expect

from tests.clients.conftest import Everloop
from tests.console.chat_proxy import CuttableProxy, proxy_to
from tests.console.conftest import admin_page, shot

ADD = {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}
REPLY = (
    "**2 + 3 = 5.** I used the `add` tool rather than guessing:\n\n"
    "- `a` was 2\n- `b` was 3\n- the tool answered 5\n\nAnything else to add up?"
)
MULTIPLY = {"tool_calls": [{"name": "multiply", "arguments": {"a": 6, "b": 7}}]}
SECOND_REPLY = "6 times 7 = **42**. Both answers came from the tools, so they are exact."
# The reply as the page shows it: Markdown rendered, so without its marks.
REPLY_SHOWN = (
    "2 + 3 = 5. I used the add tool rather than guessing: a was 2 b was 3 the tool answered 5 "
    "Anything else to add up?"
)


async def _script(everloop: Everloop, *steps: Any, chunk_delay: float = 0.0) -> None:
    """The simulator model answers these steps, streaming a word every `chunk_delay` seconds."""
    settings = {"mode": "script", "script": list(steps), "chunk_delay": chunk_delay}
    patched = await everloop.http.patch(f"/v1/llm-models/{everloop.model_id}", json={"settings": settings})
    assert patched.status_code == 200, patched.text


async def _agent(everloop: Everloop, name: str, capabilities: list[Any]) -> str:
    created = await everloop.http.post(
        "/v1/agents",
        json={
            "name": name,
            "description": "Adds, subtracts, multiplies and divides with tools.",
            "system_prompt": "Be brief.",
            "default_model_id": everloop.model_id,
            "capabilities": capabilities,
        },
    )
    assert created.status_code == 201, created.text
    agent_id: str = created.json()["id"]
    return agent_id


def _normal(text: str) -> str:
    return " ".join(text.split())


async def test_a_chat_with_a_tool_call_and_a_streamed_reply(page: Page, everloop: Everloop) -> None:
    await _script(everloop, ADD, REPLY, chunk_delay=0.02)
    agent_id = await _agent(everloop, "Calculator", ["test_math"])

    await page.goto("/#/chat")
    await expect(page.get_by_role("link", name=re.compile("^Calculator"))).to_be_visible()
    await shot(page, "chat-agents")
    await page.get_by_role("link", name=re.compile("^Calculator")).click()
    await expect(page).to_have_url(re.compile(f"#/chat/{agent_id}$"))
    message = page.get_by_label("Message", exact=True)
    await message.fill("What is 2 + 3?")
    await message.press("Enter")  # Enter sends

    # The first message made a session, and the page moved to it.
    await expect(page).to_have_url(re.compile(f"#/chat/{agent_id}/[0-9a-f-]{{36}}$"))
    card = page.get_by_role("article", name="Tool call add")
    await expect(card).to_contain_text('{"a":2,"b":3}')
    await expect(card).to_contain_text('{"result":5}')
    await expect(card).to_contain_text("done")
    reply = page.get_by_test_id("reply")
    await expect(reply).to_have_text(REPLY_SHOWN)
    await expect(reply).to_have_attribute("aria-busy", "false")
    await expect(reply.locator("strong")).to_have_text("2 + 3 = 5.")  # Markdown, rendered
    await expect(page.get_by_role("button", name="Cancel")).to_have_count(0)

    conversation = _normal(await page.get_by_role("list", name="Conversation").inner_text())
    assert conversation.count("Anything else to add up?") == 1, conversation
    assert conversation.count("What is 2 + 3?") == 1, conversation
    await expect(page.get_by_role("article", name=re.compile("^Tool call"))).to_have_count(1)

    # A second turn in the same session (and the screenshot the README shows).
    await _script(everloop, MULTIPLY, SECOND_REPLY, chunk_delay=0.02)
    await message.fill("And 6 times 7?")
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_role("article", name="Tool call multiply")).to_contain_text('{"result":42}')
    await expect(reply.nth(1)).to_have_text(re.compile("^6 times 7 = 42\\."))
    await expect(reply.nth(1)).to_have_attribute("aria-busy", "false")
    await expect(reply).to_have_count(2)
    await shot(page, "chat")

    # Shift+Enter is a new line, not a send; the session is in the list to resume.
    await message.fill("first line")
    await message.press("Shift+Enter")
    await message.press_sequentially("second line")
    assert await message.input_value() == "first line\nsecond line"
    await expect(page.get_by_label("Session", exact=True)).not_to_have_value("")

    # Resumed later (a reload): the history comes back from the stream, once.
    await page.reload()
    conversation_again = page.get_by_role("list", name="Conversation")
    await expect(conversation_again.get_by_test_id("reply").first).to_have_text(REPLY_SHOWN)
    await expect(page.get_by_role("article", name="Tool call add")).to_contain_text('{"result":5}')
    await expect(conversation_again.get_by_text("What is 2 + 3?")).to_have_count(1)
    await expect(conversation_again.get_by_test_id("reply")).to_have_count(2)
    await expect(page.get_by_role("article", name=re.compile("^Tool call"))).to_have_count(2)
    await page.emulate_media(color_scheme="dark")
    await shot(page, "chat-dark")


@pytest.fixture
async def proxy(everloop: Everloop) -> AsyncIterator[CuttableProxy]:
    async with proxy_to(everloop.url) as running:
        yield running


@pytest.fixture
async def proxied_page(browser: Browser, everloop: Everloop, proxy: CuttableProxy) -> AsyncIterator[Page]:
    """The admin's page, reaching the server through `proxy` (which can cut the network)."""
    async with admin_page(browser, everloop, base_url=proxy.url, width=390, height=844) as opened:
        yield opened


async def _record_reply_texts(page: Page) -> None:
    """From now on the page keeps, in `window.replyTexts`, every text a reply's Markdown has shown."""
    await page.evaluate(
        """() => {
            window.replyTexts = [];
            const note = () => {
                for (const box of document.querySelectorAll("[data-testid=reply] .markdown")) {
                    const text = box.textContent.trim();
                    if (text && window.replyTexts.at(-1) !== text) window.replyTexts.push(text);
                }
            };
            new MutationObserver(note).observe(document.body, {
                subtree: true, childList: true, characterData: true,
            });
        }"""
    )


async def test_a_network_cut_mid_reply_loses_and_repeats_nothing(
    proxied_page: Page, everloop: Everloop, proxy: CuttableProxy
) -> None:
    page = proxied_page
    long_reply = " ".join(f"word{i}" for i in range(1, 81)) + "."
    # About 6 s of streaming: the cut falls in the middle of the reply.
    await _script(everloop, ADD, long_reply, chunk_delay=0.08)
    agent_id = await _agent(everloop, "Streamer", ["test_math"])
    session = await everloop.http.post(f"/v1/agents/{agent_id}/sessions", json={"title": "cut"})
    session_id = session.json()["id"]

    await page.goto(f"/#/chat/{agent_id}/{session_id}")  # a phone-width window
    await expect(page.get_by_text("Live")).to_be_visible()
    await _record_reply_texts(page)
    await page.get_by_label("Message", exact=True).fill("Stream something long")
    await page.get_by_role("button", name="Send").click()
    reply = page.get_by_test_id("reply")
    await expect(reply).to_contain_text("word10 ")
    await expect(reply).to_have_attribute("aria-busy", "true")

    assert proxy.cut() > 0
    await expect(page.get_by_text(re.compile("^Reconnecting"))).to_be_visible()
    await expect(page.get_by_text("Live")).to_be_visible()
    await expect(reply).to_have_attribute("aria-busy", "false")
    await expect(reply).to_have_text(long_reply)
    assert (await reply.inner_text()).strip() == long_reply  # every word, once, in order
    # ...and never, on the way, words after a hole (the deltas sent during the cut are not replayed).
    shown = await page.evaluate("() => window.replyTexts")
    assert long_reply in shown, shown
    garbled = [text for text in shown if not long_reply.startswith(text)]
    assert not garbled, garbled
    await expect(page.get_by_role("article", name=re.compile("^Tool call"))).to_have_count(1)
    await expect(page.get_by_text("Stream something long")).to_have_count(1)
    await shot(page, "chat-phone")

    # The server saw the page come back: a second stream, resumed from the last frame it had.
    streams = proxy.paths_like(rf"/sessions/{session_id}/sse")
    assert len(streams) >= 2, proxy.requests
    assert "since_id=" not in streams[0]
    assert all("since_id=" in resumed for resumed in streams[1:]), streams
    # ...and that frame was a streamed word: a live frame's id (version 8), not a stored event's.
    since = parse_qs(urlsplit(streams[1]).query)["since_id"][0]
    assert uuid.UUID(since).version == 8, since


async def test_an_approval_from_the_chat(page: Page, everloop: Everloop) -> None:
    await _script(
        everloop, {"tool_calls": [{"name": "add", "arguments": {"a": 40, "b": 2}}]}, "It is **42**."
    )
    config = {"require_approval": ["add"]}
    agent_id = await _agent(everloop, "Careful", [{"ref": "test_math", "config": config}])

    await page.goto(f"/#/chat/{agent_id}")
    await page.get_by_label("Message", exact=True).fill("What is 40 + 2?")
    await page.get_by_role("button", name="Send").click()
    card = page.get_by_role("article", name="Tool call add")
    approve = card.get_by_role("button", name="Approve")
    await expect(approve).to_be_visible()
    await expect(card).to_contain_text('{"a":40,"b":2}')
    await expect(card.get_by_role("button", name="Deny")).to_be_visible()
    await expect(page.get_by_role("button", name="Cancel")).to_be_visible()  # the turn waits
    await shot(page, "chat-approval")

    await approve.click()
    await expect(card).to_contain_text("Approved by you")
    await expect(card).to_contain_text('{"result":42}')
    await expect(page.get_by_test_id("reply")).to_have_text("It is 42.")
    await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    await expect(page.get_by_role("button", name="Cancel")).to_have_count(0)


def _png(size: int = 48) -> bytes:
    """A small square PNG (an orange tile), made here rather than kept as a file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes([245, 159, 0]) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


async def test_an_image_a_cancel_and_a_failed_turn(page: Page, everloop: Everloop) -> None:
    slow = " ".join(f"step{i}" for i in range(1, 200))
    await _script(everloop, slow, chunk_delay=0.3)
    agent_id = await _agent(everloop, "Looker", ["test_math"])
    await page.goto(f"/#/chat/{agent_id}")

    # An image goes with the text as an image part (base64, its media type).
    await page.get_by_label("Attach image").set_input_files(
        files=[FilePayload(name="tile.png", mimeType="image/png", buffer=_png())]
    )
    await expect(page.get_by_role("img", name="tile.png")).to_be_visible()  # the preview
    await page.get_by_label("Message", exact=True).fill("What colour is this?")
    await page.get_by_role("button", name="Send").click()
    conversation = page.get_by_role("list", name="Conversation")
    await expect(conversation.get_by_role("img", name="Attached image 1")).to_be_visible()
    await expect(page.get_by_role("img", name="tile.png")).to_have_count(0)  # the composer is clear

    # Cancel while the reply streams: the turn stops, the partial reply says so.
    reply = page.get_by_test_id("reply")
    await expect(reply).to_contain_text("step3")
    await page.get_by_role("button", name="Cancel").click()
    await expect(conversation.get_by_text("Turn cancelled.")).to_be_visible()
    await expect(reply).to_contain_text("Stopped: the turn was cancelled.")
    await expect(page.get_by_role("button", name="Cancel")).to_have_count(0)

    session_id = page.url.rsplit("/", 1)[1]
    stored = await everloop.http.get(f"/v1/agents/{agent_id}/sessions/{session_id}/messages")
    first = stored.json()["data"][0]
    assert [part["type"] for part in first["content"]] == ["text", "image"], first
    assert first["content"][1]["media_type"] == "image/png"

    # A turn that fails says so, plainly.
    failing = {"mode": "echo", "error": {"status": 400}}
    patched = await everloop.http.patch(f"/v1/llm-models/{everloop.model_id}", json={"settings": failing})
    assert patched.status_code == 200, patched.text
    await page.get_by_label("Message", exact=True).fill("And now?")
    await page.get_by_label("Message", exact=True).press("Enter")
    failed = conversation.get_by_role("alert")
    await expect(failed).to_contain_text("The turn failed: the provider rejected the request")
    await expect(failed).to_contain_text("llm_error")
    await shot(page, "chat-failed")


async def test_the_conversation_folds_frames_whatever_the_network_did(page: Page) -> None:
    """chat_state.js on its own, in the page: a retried LLM call (reset), a word lost in a cut, and a
    word that arrives after the whole reply still end in the reply's own text; a tool card stays one
    card whichever of its events arrive."""
    await page.goto("/")
    await expect(page.get_by_role("navigation", name="Console")).to_be_visible()
    folded = await page.evaluate(
        """async () => {
            const { EMPTY, foldAll } = await import("./console/views/chat_state.js");
            const ctx = { turn_id: "t1", input_message_id: "u1" };
            const delta = (d) => ({
                type: "output.message.delta", context: ctx, data: { message_id: "m1", delta: d },
            });
            const reply = { id: "m1", content: [{ type: "text", text: "Hi there!" }] };
            const call = { id: "c1", name: "add", arguments: { a: 1, b: 2 } };
            const frames = [
                { type: "message.user", data: { message: { id: "u1", content: [] } } },
                { type: "turn.started", context: ctx, data: { turn_id: "t1", input_message_id: "u1" } },
                { type: "tool.call_started", context: ctx, data: { tool_call: call } },
                { type: "tool.call_completed", context: ctx, data: {
                  tool_call_id: "c1", tool_name: "add", status: "success", success: true,
                  result: [{ type: "text", text: '{"result": 3}' }], error: null } },
                { type: "tool.call_started", context: ctx, data: { tool_call: call } },
                delta("Hel"), delta("lo"),
                { type: "output.message.reset", context: ctx, data: { message_id: "m1", attempt: 2 } },
                delta("Hi"), /* " there" lost in a cut */
                { type: "message.agent", context: ctx, data: { message: reply, metadata: null } },
                delta("!"),
                { type: "output.message.completed", context: ctx, data: { message: reply, metadata: null } },
                { type: "turn.completed", context: ctx, data: { turn_id: "t1" } },
            ];
            const state = foldAll(EMPTY, frames);
            return { items: state.items, running: state.running, waiting: state.waiting };
        }"""
    )
    kinds = [item["kind"] for item in folded["items"]]
    assert kinds == ["user", "tool", "agent"], folded
    tool, agent = folded["items"][1], folded["items"][2]
    assert tool["status"] == "success" and tool["result"] == {"result": 3}, tool
    assert agent["text"] == "Hi there!" and agent["final"], agent
    assert folded["running"] is False and folded["waiting"] is False


async def test_the_agents_of_one_user_never_show_to_the_next(page: Page, everloop: Everloop) -> None:
    """The chat keeps the agents it loaded for a new page's first frame: only for the user they are
    for. Another user's chat (the same tab, no reload) starts with "Loading…", not with them."""
    await _agent(everloop, "Secretive", ["test_math"])
    await page.goto("/#/chat")
    await expect(page.get_by_role("link", name=re.compile("^Secretive"))).to_be_visible()
    first_frame = await page.evaluate(
        """async () => {
            const { html, render } = await import("./console/html.js");
            const { Account } = await import("./console/account.js");
            const ChatView = (await import("./console/views/chat.js")).default;
            const box = document.createElement("div");
            document.body.append(box);
            const someoneElse = { me: { id: "another-user" }, config: {}, signOut() {}, reloadMe() {} };
            const view = html`<${ChatView} params=${[null, null]} />`;
            render(html`<${Account.Provider} value=${someoneElse}>${view}<//>`, box);
            const text = box.textContent;
            render(null, box);
            box.remove();
            return text;
        }"""
    )
    assert "Secretive" not in first_frame, first_frame


async def test_after_a_reconnect_a_reply_never_shows_words_after_a_hole(page: Page) -> None:
    """chat_state.js on its own: the stream came back (RESUMED) while a reply streamed, and the deltas
    sent during the cut are lost. The reply keeps what it had and takes no more deltas until the whole
    message, so each text it shows is the start of the real one; a reply that began during the cut
    does the same; after a reset (the call again from its first word) deltas count again."""
    await page.goto("/")
    await expect(page.get_by_role("navigation", name="Console")).to_be_visible()
    shown = await page.evaluate(
        """async () => {
            const { EMPTY, RESUMED, fold } = await import("./console/views/chat_state.js");
            const ctx = { turn_id: "t1", input_message_id: "u1" };
            const delta = (id, d) => ({
                type: "output.message.delta", context: ctx, data: { message_id: id, delta: d },
            });
            const whole = (id, text) => ({
                type: "output.message.completed", context: ctx,
                data: { message: { id, content: [{ type: "text", text }] }, metadata: null },
            });
            const frames = [
                { type: "message.user", data: { message: { id: "u1", content: [] } } },
                { type: "turn.started", context: ctx, data: { turn_id: "t1", input_message_id: "u1" } },
                delta("m1", "Hello"), delta("m1", " wor"),
                /* cut: "ld, how are" lost */
                { type: RESUMED },
                delta("m1", " you?"),
                whole("m1", "Hello world, how are you?"),
                /* the next step began during a second cut: its first words are lost */
                { type: RESUMED },
                delta("m2", "ine, thanks."),
                whole("m2", "Fine, thanks."),
                /* a retried call starts again from its first word: streaming again */
                delta("m3", "Oops"),
                { type: "output.message.reset", context: ctx, data: { message_id: "m3", attempt: 2 } },
                delta("m3", "All"), delta("m3", " good."),
                whole("m3", "All good."),
                { type: "turn.completed", context: ctx, data: { turn_id: "t1" } },
                /* a later turn streams as usual */
                { type: "message.user", data: { message: { id: "u2", content: [] } } },
                { type: "turn.started", context: { turn_id: "t2" }, data: { turn_id: "t2" } },
                { type: "output.message.delta", context: { turn_id: "t2" },
                  data: { message_id: "m4", delta: "Hi" } },
            ];
            let state = EMPTY;
            const seen = [];
            for (const frame of frames) {
                state = fold(state, frame);
                for (const item of state.items) {
                    if (item.kind !== "agent") continue;
                    const { key, text, gap, final } = item;
                    seen.push({ id: key, text, gap: Boolean(gap), final: Boolean(final) });
                }
            }
            return { seen, items: state.items };
        }"""
    )
    final = {"a:m1": "Hello world, how are you?", "a:m2": "Fine, thanks.", "a:m3": "All good.", "a:m4": "Hi"}
    garbled = [s for s in shown["seen"] if not final[s["id"]].startswith(s["text"])]
    assert not garbled, garbled
    assert {"id": "a:m1", "text": "Hello wor", "gap": True, "final": False} in shown["seen"]
    assert {"id": "a:m2", "text": "", "gap": True, "final": False} in shown["seen"]
    assert {"id": "a:m3", "text": "All", "gap": False, "final": False} in shown["seen"]
    agents = {item["key"]: item for item in shown["items"] if item["kind"] == "agent"}
    assert [agents[k]["text"] for k in ("a:m1", "a:m2", "a:m3")] == [
        final["a:m1"],
        final["a:m2"],
        final["a:m3"],
    ]
    assert not any(agents[k]["gap"] for k in ("a:m1", "a:m2", "a:m3")), agents
    assert agents["a:m4"]["text"] == "Hi" and not agents["a:m4"]["gap"], agents


async def test_a_first_message_sent_again_after_a_failure_makes_one_session_and_one_message(
    page: Page, everloop: Everloop
) -> None:
    await _script(everloop, "Got it.")
    agent_id = await _agent(everloop, "Retrier", ["test_math"])
    created: list[str] = []
    page.on(
        "request",
        lambda request: (
            created.append(request.url)
            if request.method == "POST" and request.url.endswith(f"/v1/agents/{agent_id}/sessions")
            else None
        ),
    )
    keys: list[str | None] = []

    # The first post of the message reaches the server, but its answer is lost on the way back.
    async def answer_lost(route: Any) -> None:
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            await route.fetch()
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route(lambda url: url.endswith("/messages"), answer_lost)
    await page.goto(f"/#/chat/{agent_id}")
    message = page.get_by_label("Message", exact=True)
    await message.fill("Count me once")
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_role("alert")).to_be_visible()  # the send failed, the text is kept
    await expect(message).to_have_value("Count me once")

    await page.get_by_role("button", name="Send").click()  # sent again
    await expect(page).to_have_url(re.compile(f"#/chat/{agent_id}/[0-9a-f-]{{36}}$"))
    await expect(page.get_by_test_id("reply")).to_have_text("Got it.")
    assert len(created) == 1, created
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    sessions = (await everloop.http.get(f"/v1/agents/{agent_id}/sessions")).json()["data"]
    assert len(sessions) == 1, sessions
    stored = await everloop.http.get(f"/v1/agents/{agent_id}/sessions/{sessions[0]['id']}/messages")
    users = [m for m in stored.json()["data"] if m["role"] == "user"]
    assert len(users) == 1, users
    await expect(page.get_by_role("list", name="Conversation").get_by_text("Count me once")).to_have_count(1)


async def test_a_stream_the_server_refuses_falls_back_then_gives_up_with_a_retry(
    proxied_page: Page, everloop: Everloop, proxy: CuttableProxy
) -> None:
    page = proxied_page
    await _script(everloop, "First answer.")
    agent_id = await _agent(everloop, "Refused", ["test_math"])
    session = await everloop.http.post(f"/v1/agents/{agent_id}/sessions", json={"title": "refused"})
    session_id = session.json()["id"]
    await page.goto(f"/#/chat/{agent_id}/{session_id}")
    await expect(page.get_by_text("Live")).to_be_visible()
    message = page.get_by_label("Message", exact=True)
    await message.fill("One")
    await message.press("Enter")
    reply = page.get_by_test_id("reply")
    await expect(reply).to_have_text("First answer.")

    # The server no longer knows the stream's last id (a 400, which an EventSource cannot see).
    async def unknown_id(route: Any) -> None:
        await route.fulfill(status=400, json={"detail": "since_id: no such event"})

    def resumes_by_id(url: str) -> bool:
        return "/sse?" in url and "since_id=" in url

    await page.route(resumes_by_id, unknown_id)
    assert proxy.cut() > 0
    await expect(page.get_by_text(re.compile("^Reconnecting"))).to_be_visible()
    await expect(page.get_by_text("Live")).to_be_visible()
    resumed = proxy.paths_like(rf"/sessions/{session_id}/sse\?.*after_sequence=\d+")
    assert resumed, proxy.requests
    await expect(reply).to_have_text("First answer.")  # nothing twice
    await _script(everloop, "Second answer.")
    await message.fill("Two")
    await message.press("Enter")
    await expect(reply.nth(1)).to_have_text("Second answer.")  # the resumed stream is live
    await expect(page.get_by_role("list", name="Conversation").get_by_text("One", exact=True)).to_have_count(
        1
    )

    # A stream refused whatever its cursor: after a few tries the page says so and offers a retry.
    def any_stream(url: str) -> bool:
        return "/sse?" in url or url.endswith("/sse")

    await page.route(any_stream, unknown_id)
    assert proxy.cut() > 0
    stopped = page.get_by_role("alert").filter(has_text="Live updates stopped")
    await expect(stopped).to_be_visible(timeout=60_000)
    await shot(page, "chat-stream-refused")
    await page.unroute(any_stream, unknown_id)
    await stopped.get_by_role("button", name="Retry").click()
    await expect(page.get_by_text("Live")).to_be_visible()
    await expect(stopped).to_have_count(0)
    await expect(reply).to_have_count(2)


async def test_ids_from_the_address_stay_one_segment_of_an_api_path(page: Page, everloop: Everloop) -> None:
    """An id in the hash is data: `..` or `a?b` must not climb out of, or add a query to, a chat path."""
    agent_id = await _agent(everloop, "Pathy", ["test_math"])
    paths: list[str] = []
    page.on(
        "request",
        lambda request: paths.append(urlsplit(request.url).path + "?" + urlsplit(request.url).query),
    )
    await page.goto(f"/#/chat/{agent_id}/a%3Fb")
    await expect(page.get_by_text("This session no longer exists.")).to_be_visible()
    await page.goto(f"/#/chat/{agent_id}/..")
    await page.goto("/#/chat/..")
    await page.goto("/#/chat")
    await expect(page.get_by_role("link", name=re.compile("^Pathy"))).to_be_visible()
    chat = [p for p in paths if p.startswith("/v1/")]
    assert any(p.startswith(f"/v1/agents/{agent_id}/sessions/a%3Fb/sse?") for p in chat), chat
    stray = [
        p
        for p in chat
        if p.startswith("/v1/sessions")
        or p.startswith(f"/v1/agents/{agent_id}/sse")
        or p.startswith(f"/v1/agents/{agent_id}/sessions/a/")
        or p.startswith(f"/v1/agents/{agent_id}/sessions/a?")
    ]
    assert not stray, stray
