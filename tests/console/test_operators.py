"""The operator views in a real browser, on a real turn: the agent (a simulator model scripted to
call `test_math`'s `add`, then answer) runs a whole tool loop through the worker, and the console
shows it as a trace waterfall, a session timeline with its workflow, a fork run from one of its
steps, a golden test judged, and the usage it cost."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from playwright.async_api import Browser, Page, expect

from tests import drift_traffic
from tests.api.test_auth_full import As
from tests.clients.conftest import Everloop
from tests.console.conftest import WAIT_MS, new_context, shot, sign_in, watch_errors
from tests.console.test_shell import unnamed_controls

SCRIPT = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "2 + 3 = 5."]
TURN_ENDS = {"turn.completed", "turn.failed", "turn.cancelled"}


@dataclass
class Turn:
    agent_id: str
    session_id: str
    turn_id: str
    trace: dict[str, Any]


async def ended(http: httpx.AsyncClient, events_path: str) -> dict[str, Any]:
    """The session's stream, read until its turn's end (the event, not a poll)."""
    async with http.stream(
        "GET", events_path, headers={"accept": "text/event-stream"}, timeout=WAIT_MS / 1000
    ) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event.get("type") in TURN_ENDS:
                    return dict(event)
    raise AssertionError("the stream ended before the turn did")


async def a_turn(everloop: Everloop, title: str = "Sums") -> Turn:
    """A finished turn with a tool call: reason (calls add), the tool, reason (answers)."""
    http = everloop.http
    settings = {"settings": {"mode": "script", "script": SCRIPT}}
    assert (await http.patch(f"/v1/llm-models/{everloop.model_id}", json=settings)).status_code == 200
    agent = await http.post(
        "/v1/agents",
        json={
            "name": "Calculator",
            "system_prompt": "Be brief.",
            "capabilities": ["test_math"],
            "default_model_id": everloop.model_id,
        },
    )
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["id"]
    session = await http.post(f"/v1/agents/{agent_id}/sessions", json={"title": title})
    assert session.status_code == 201, session.text
    session_id = session.json()["id"]
    base = f"/v1/agents/{agent_id}/sessions/{session_id}"
    message = {"message": {"role": "user", "content": [{"type": "text", "text": "What is 2 + 3?"}]}}
    assert (await http.post(f"{base}/messages", json=message)).status_code == 201
    end = await ended(http, f"{base}/events")
    assert end["type"] == "turn.completed", end
    turn_id = end["data"]["turn_id"]
    trace = (await http.get(f"/v1/traces/{turn_id}")).json()
    return Turn(agent_id, session_id, turn_id, trace)


def tokens(span: dict[str, Any]) -> int:
    return int((span["input_tokens"] or 0) + (span["output_tokens"] or 0))


async def test_a_turn_as_a_trace_waterfall(page: Page, everloop: Everloop) -> None:
    turn = await a_turn(everloop)
    spans = {
        s["kind"] + (":" + s["span_id"].rsplit(":", 1)[-1] if s["kind"] == "llm" else ""): s
        for s in turn.trace["spans"]
    }
    root, first, tool, second = spans["agent"], spans["llm:1"], spans["tool"], spans["llm:2"]

    await page.goto(f"/#/traces/{turn.turn_id}")
    await expect(page.get_by_role("heading", name="Trace: Calculator")).to_be_visible()
    rows = page.locator(".wf-row")
    # Depth first, children in start order: the turn, then its steps as they ran.
    await expect(rows).to_have_count(4)
    assert [await row.get_attribute("data-span") for row in await rows.all()] == [
        root["span_id"],
        first["span_id"],
        tool["span_id"],
        second["span_id"],
    ]
    # Each bar says its span, kind, duration and tokens (the button's name, and what it shows).
    reason = page.get_by_role("button", name=re.compile(rf"^reason, llm, .*{tokens(first)} tokens"))
    await expect(reason.first).to_be_visible()
    await expect(rows.nth(1).locator(".wf-tok")).to_have_text(f"{tokens(first)} tok")
    duration = r"\d+ ms|\d+(\.\d)? s"  # a loaded machine may take a second
    await expect(rows.nth(2).locator(".wf-dur")).to_have_text(re.compile(rf"^({duration})$"))
    await expect(rows.nth(2)).to_have_attribute("aria-label", re.compile(rf"^add, tool, ({duration})$"))
    # Bars are laid out on the turn's time axis: each step starts after the one before.
    lefts = [
        await row.locator(".wf-bar").evaluate("b => b.getBoundingClientRect().left")
        for row in await rows.all()
    ]
    assert lefts[0] <= lefts[1] < lefts[2] < lefts[3], lefts
    widths = [
        await row.locator(".wf-bar").evaluate("b => b.getBoundingClientRect().width")
        for row in await rows.all()
    ]
    assert widths[0] == max(widths), widths  # the turn spans all its steps

    # Click opens a span's input and output; Enter on another opens it too.
    await rows.nth(1).click()
    detail = page.get_by_role("region", name="Span reason")
    await expect(detail).to_contain_text("Input")
    await expect(detail).to_contain_text('"name": "add"')  # the reply's tool call, its output
    await expect(rows.nth(1)).to_have_attribute("aria-expanded", "true")
    await page.keyboard.press("ArrowDown")  # from the row just clicked to the next
    await expect(rows.nth(2)).to_be_focused()
    await page.keyboard.press("Enter")
    tool_detail = page.get_by_role("region", name="Span add")
    await expect(tool_detail).to_contain_text('"arguments"')
    await expect(tool_detail).to_contain_text('{\\"result\\": 5}')
    await rows.nth(1).click()  # closes again
    await expect(detail).to_have_count(0)
    assert await unnamed_controls(page) == []
    await shot(page, "trace-waterfall")

    # The traces list finds it by its name, status and model.
    await page.goto("/#/traces")
    await page.get_by_label("Name contains").fill("calc")
    await page.get_by_label("Model").fill(turn.trace["models_used"][0])
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_label("Status").select_option("completed")
    await expect(page.get_by_role("link", name="Calculator")).to_have_count(1)
    await shot(page, "traces")
    await page.get_by_label("Status").select_option("failed")
    await expect(page.get_by_text("No trace matches these filters.")).to_be_visible()


async def test_the_session_page_shows_its_timeline_and_workflow(page: Page, everloop: Everloop) -> None:
    turn = await a_turn(everloop)
    await page.goto("/#/sessions")
    await expect(page.get_by_role("heading", name="Sessions", exact=True)).to_be_visible()
    await page.get_by_label("Agent").select_option(label="Calculator")
    link = page.get_by_role("link", name="Sums")
    await expect(link).to_be_visible()
    await expect(page.get_by_role("row", name=re.compile("Sums Calculator idle 1"))).to_be_visible()
    await shot(page, "sessions")
    await link.click()

    await expect(page.get_by_role("heading", name="Sums", exact=True)).to_be_visible()
    timeline = page.get_by_role("region", name=f"Turn {turn.turn_id[:8]}")
    types = timeline.locator(".tl-type")
    await expect(types.last).to_have_text("session.idled")
    seen = await types.all_inner_texts()
    assert seen[0] == "message.user" and "turn.completed" in seen, seen
    assert seen.index("tool.call_started") < seen.index("tool.call_completed") < seen.index("turn.completed")
    await expect(timeline.locator(".tl-item").first).to_contain_text("What is 2 + 3?")
    # An event opens to its JSON.
    completed = timeline.locator(".tl-item", has_text="turn.completed")
    await completed.locator("summary").click()
    await expect(completed.locator("pre")).to_contain_text('"duration_ms"')
    # Its turn is listed, and leads to its waterfall.
    await expect(page.get_by_role("link", name=turn.turn_id[:8]).first).to_be_visible()

    workflow = page.get_by_role("region", name="Workflow")
    await expect(workflow).to_contain_text(f"session-{turn.session_id}")
    await expect(workflow.get_by_role("table", name="Workflow runs")).to_be_visible()
    await expect(workflow).to_contain_text("Pending activities")
    assert await unnamed_controls(page) == []
    await shot(page, "session-timeline")

    # A turn started elsewhere (here through the API) shows up on the open page.
    message = {"message": {"role": "user", "content": [{"type": "text", "text": "And 2 + 3 again?"}]}}
    base = f"/v1/agents/{turn.agent_id}/sessions/{turn.session_id}"
    assert (await everloop.http.post(f"{base}/messages", json=message)).status_code == 201
    second = page.locator(".tl-turn").nth(1)
    await expect(second.locator(".tl-type", has_text="turn.completed")).to_have_count(1, timeout=WAIT_MS)
    await expect(second).to_contain_text("And 2 + 3 again?")
    await expect(page.get_by_role("table", name="Turns").get_by_role("row")).to_have_count(3)  # head + 2

    await page.get_by_role("link", name="Trace waterfall").first.click()
    await expect(page.locator(".wf-row")).to_have_count(4)


async def test_a_fork_from_the_console_runs_and_shows_its_changes(page: Page, everloop: Everloop) -> None:
    turn = await a_turn(everloop)
    await page.goto(f"/#/traces/{turn.turn_id}")
    await page.get_by_text("Fork from a step").click()
    await expect(page.get_by_label("From step")).to_have_value("1")
    await page.get_by_label("Temperature").fill("0.5")
    await page.get_by_role("button", name="Start fork").click()

    await expect(page).to_have_url(re.compile(r"#/replays/[0-9a-f-]{36}$"))
    await expect(page.locator(".replay-status .badge")).to_have_text("completed")
    changes = page.get_by_role("table", name="Changes from the original")
    await expect(changes.get_by_role("row", name=re.compile(r"^1 temperature none 0\.5$"))).to_be_visible()
    await expect(page.get_by_role("region", name="Result")).to_contain_text("2 + 3 = 5.")
    fork_events = page.get_by_role("region", name="The fork's events")
    await expect(fork_events.locator(".tl-type", has_text="turn.completed")).to_have_count(1)
    await shot(page, "replay")

    await page.goto("/#/replays")
    await expect(
        page.get_by_role("row", name=re.compile(r"fork completed .* 1 temperature 3\/3"))
    ).to_be_visible()


async def test_a_fork_run_step_by_step_from_the_console(page: Page, everloop: Everloop) -> None:
    turn = await a_turn(everloop)
    await page.goto(f"/#/traces/{turn.turn_id}")
    await page.get_by_text("Fork from a step").click()
    await page.get_by_label("Mode", exact=True).select_option("interactive")
    await page.get_by_role("button", name="Start fork").click()

    status = page.locator(".replay-status")
    await expect(status).to_contain_text("holding before step 1", timeout=WAIT_MS)
    await page.get_by_role("button", name="One step").click()  # the first reasoning step, then a hold
    await expect(status).to_contain_text("holding before step 2", timeout=WAIT_MS)
    await expect(status).to_contain_text("Step 1 of")
    await page.get_by_role("button", name="Play to the end").click()
    await expect(status.locator(".badge")).to_have_text("completed", timeout=WAIT_MS)
    await expect(page.get_by_role("button", name="One step")).to_have_count(0)  # no controls once done
    await expect(page.get_by_role("region", name="Result")).to_contain_text("2 + 3 = 5.")


async def test_a_golden_test_pinned_run_and_judged(page: Page, everloop: Everloop) -> None:
    turn = await a_turn(everloop)
    await page.goto(f"/#/traces/{turn.turn_id}")
    await page.get_by_text("Pin as a golden test").click()
    await page.get_by_label("Test name").fill("adds two numbers")
    await expect(page.get_by_label("Expected final message (empty: not checked)")).to_have_value("2 + 3 = 5.")
    await page.get_by_role("button", name="Create golden test").click()

    await expect(page.get_by_role("heading", name="Golden tests", exact=True)).to_be_visible()
    await page.get_by_role("checkbox", name="Choose adds two numbers").check()
    await page.get_by_role("button", name="Run 1 selected").click()
    verdict = page.get_by_role("article", name="adds two numbers: passed")
    await expect(verdict).to_be_visible()
    checks = verdict.get_by_role("table", name="Checks of adds two numbers")
    await expect(
        checks.get_by_role("row", name=re.compile(r"^final_message\.contains passed"))
    ).to_be_visible()
    await expect(page.locator(".run-head").first).to_contain_text("1 passed, 0 failed of 1")
    await shot(page, "golden")


async def test_usage_shows_the_turns_tokens(page: Page, everloop: Everloop) -> None:
    turn = await a_turn(everloop)
    total = turn.trace["total_tokens"]["input"] + turn.trace["total_tokens"]["output"]
    await page.goto("/#/usage")
    await expect(page.get_by_role("heading", name="Usage & cost", exact=True)).to_be_visible()
    await expect(page.get_by_test_id("total-tokens")).to_have_text(f"{total:,}")
    tokens_chart = page.get_by_role("img", name=re.compile(rf"^Tokens: \d+ bars, total {total:,},"))
    await expect(tokens_chart).to_be_visible()
    await page.get_by_text("Tokens as a table").click()
    await expect(page.get_by_role("cell", name=f"{total:,}", exact=True).first).to_be_visible()
    await expect(page.get_by_role("table", name="Models in this window")).to_contain_text(
        turn.trace["models_used"][0]
    )
    await page.get_by_label("Period").select_option("30d")
    days = len((await everloop.http.get("/v1/analytics/usage", params={"period": "30d"})).json()["daily"])
    await expect(
        page.get_by_role("img", name=re.compile(rf"^Tokens: {days} bars, total {total:,},"))
    ).to_be_visible()
    await page.get_by_label("Period").select_option("7d")
    await expect(tokens_chart).to_be_visible()
    for table in await page.locator("details.chart-table[open] > summary").all():
        await table.click()  # folded again, for the picture
    assert await unnamed_controls(page) == []
    await shot(page, "usage")


async def test_a_drift_alert_found_and_resolved(page: Page, everloop: Everloop) -> None:
    await page.goto("/#/drift")
    await expect(page.get_by_text("No open drift alerts.")).to_be_visible()
    # An app's traffic whose cost doubled in the last hours against the days before.
    now = datetime.now(UTC)
    await drift_traffic.baseline_and_recent(
        As(everloop.http, {"access_token": everloop.api_key}), now, baseline_cost=0.01, recent_cost=0.02
    )
    await page.get_by_role("button", name="Run detection now").click()
    # The first run in a process loads scipy: a few seconds.
    await expect(page.locator("#announce")).to_contain_text("1 new alert(s)", timeout=WAIT_MS)
    alert = page.get_by_role(
        "row", name=re.compile(r"^high cost pipeline-drift · gpt-drift 40 → 40 .* \+\d+ %")
    )
    await expect(alert).to_be_visible()
    summary = page.get_by_role("list", name="Drift summary")
    await expect(summary).to_contain_text(re.compile(r"1\s*open alerts\s*1\s*high"))
    await shot(page, "drift")

    await alert.get_by_role("button", name="Resolve the cost alert").click()
    await expect(page.get_by_text("No open drift alerts.")).to_be_visible()
    await expect(summary).to_contain_text(re.compile(r"0\s*open alerts"))
    await page.get_by_label("Show resolved alerts too").check()
    await expect(page.get_by_role("row", name=re.compile(r"^high cost .* resolved"))).to_be_visible()


async def test_the_operator_views_fit_a_phone(browser: Browser, everloop: Everloop) -> None:
    turn = await a_turn(everloop)
    context = await new_context(browser, everloop, width=390)
    await sign_in(context, everloop.email, everloop.password)
    page = await context.new_page()
    errors = watch_errors(page)
    for view in [
        f"traces/{turn.turn_id}",
        f"sessions/{turn.agent_id}/{turn.session_id}",
        "sessions",
        "traces",
        "usage",
        "golden",
        "replays",
        "drift",
    ]:
        await page.goto(f"/#/{view}")
        await expect(page.locator("#page-title")).to_be_visible()
        await page.wait_for_load_state("networkidle")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"#/{view} scrolls sideways at phone width ({width}px)"
        assert await unnamed_controls(page) == [], view
    await page.goto(f"/#/traces/{turn.turn_id}")
    await page.locator(".wf-row").nth(2).click()
    await expect(page.get_by_role("region", name="Span add")).to_be_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"an open span scrolls sideways at phone width ({width}px)"
    await shot(page, "phone-trace-waterfall")
    await context.close()
    assert not errors, errors
