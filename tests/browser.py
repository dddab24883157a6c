"""Debian's chromium driven by Playwright, for every browser test (tests/clients, tests/console).

`make test` installs chromium with apt when it is missing; Playwright's own download (`playwright
install`) is never used, so nothing is fetched at run time."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, async_playwright


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "chromium is missing: `make test` installs it (apt-get install chromium)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()
