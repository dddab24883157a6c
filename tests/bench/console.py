"""The web console's chat page: time to interactive and page weight, as `make dev` serves it.

    .venv/bin/python -m tests.bench.console [--iterations 20]

One embedded stack, `everloop dev`'s seed (the simulator and the Demo agent), an `everloop api`
process in AUTH_MODE=none (as `make dev` runs it), and Debian's chromium. Per iteration a new
browser context (an empty cache, as a first visit) opens `/#/chat/<agent>/<session>` of a session
with one finished exchange, and the page reports when the message box is ready for typing:
`performance.now()` at that moment, counted from the navigation's start. Then the same page again in
that context (a revisit: the files revalidated, answered 304). Page weight: the bytes the first visit
transferred, compressed as sent (bodies and headers, the API's JSON answers included, the event
stream excluded: it never ends). Targets (issue 17): ≤ 300 ms to interactive, ≤ 300 KB compressed.
Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page, Request

from core.logging import configure_logging
from core.settings import LogFormat, load_settings
from everloop.seed import DEMO_AGENT_NAME, seed_dev_data
from everloop.stack import Endpoints
from tests.bench.stack import run_on_fresh_stack
from tests.browser import chromium
from tests.processes import api_processes

TARGET_TTI_MS = 300.0
TARGET_WEIGHT_KB = 300.0
# The chat view is interactive when its message box is there and enabled.
READY = "main textarea:not([disabled])"


async def ready_at(page: Page) -> float:
    """Milliseconds from the navigation's start to the message box being ready."""
    await page.wait_for_selector(READY, timeout=30_000)
    value: float = await page.evaluate(
        """(selector) => {
            const mark = performance.getEntriesByName("everloop-ready")[0];
            return mark ? mark.startTime : performance.now();
        }""",
        READY,
    )
    return value


async def first_visit(browser: Browser, url: str, path: str) -> tuple[float, float, int, float]:
    """(first-visit ms, revisit ms, bytes transferred, DOMContentLoaded ms)."""
    context = await browser.new_context(base_url=url)
    page = await context.new_page()
    # Stamp the moment the box appears from inside the page (a MutationObserver), so the figure does
    # not include Playwright's own polling.
    await page.add_init_script(
        "new MutationObserver((_, observer) => {"
        f"  if (document.querySelector({json.dumps(READY)})) {{"
        '    performance.mark("everloop-ready"); observer.disconnect();'
        "  }"
        "}).observe(document, {childList: true, subtree: true, attributes: true});"
    )
    requests: list[Request] = []
    page.on("requestfinished", lambda request: requests.append(request))
    await page.goto(path)
    first = await ready_at(page)
    dom = await page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    transferred = 0
    for request in requests:
        sizes = await request.sizes()
        transferred += sizes["responseBodySize"] + sizes["responseHeadersSize"]
    await page.goto("about:blank")
    await page.goto(path)
    again = await ready_at(page)
    await context.close()
    return first, again, transferred, float(dom)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}},
        **endpoints.as_env(),
        "EVERLOOP_DATA_DIR": str(data_dir),
        "AUTH_MODE": "none",
        "EVERLOOP_SIMULATOR": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LOG_LEVEL": "WARNING",
    }
    await seed_dev_data(endpoints.database_url, load_settings(env))
    with api_processes(env, data_dir, 1) as urls:
        url = urls[0]
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            agents = (await http.get("/v1/agents")).json()["data"]
            agent = next(a for a in agents if a["name"] == DEMO_AGENT_NAME)
            session = (await http.post(f"/v1/agents/{agent['id']}/sessions", json={})).json()
        path = f"/#/chat/{agent['id']}/{session['id']}"
        print(f"API: `everloop api` at {url} (AUTH_MODE=none); page {path}", flush=True)
        async with chromium() as browser:
            for _ in range(args.warmup):
                await first_visit(browser, url, path)
            firsts, agains, weights, doms = [], [], [], []
            for _ in range(args.iterations):
                first, again, weight, dom = await first_visit(browser, url, path)
                firsts.append(first)
                agains.append(again)
                weights.append(weight)
                doms.append(dom)
        report(firsts, agains, weights, doms)


def report(firsts: list[float], agains: list[float], weights: list[int], doms: list[float]) -> None:
    def row(name: str, values: list[float], unit: str, target: str = "") -> str:
        return (
            f"  {name:<34} p50 {statistics.median(values):7.1f} {unit}  p95 {pct(values, 0.95):7.1f} {unit}"
            f"  {target}"
        )

    print(f"\nChat page, {len(firsts)} first visits in new browser contexts:")
    print(row("time to interactive (first visit)", firsts, "ms", f"target <= {TARGET_TTI_MS:.0f} ms"))
    print(row("time to interactive (revisit)", agains, "ms"))
    print(row("DOMContentLoaded (first visit)", doms, "ms"))
    kb = [w / 1024 for w in weights]
    print(row("page weight (compressed, sent)", kb, "KB", f"target <= {TARGET_WEIGHT_KB:.0f} KB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.console", description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20, help="measured first visits (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="visits run first and discarded (default 3)")
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)

    async def run(endpoints: Endpoints, data_dir: Path) -> None:
        await bench(endpoints, data_dir, args)

    return run_on_fresh_stack(run)


if __name__ == "__main__":
    sys.exit(main())
