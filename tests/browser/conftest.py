"""A real Chromium (Debian's, driven by Playwright) against the real app on a
real port and the real database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, async_playwright, expect

from service.app import create_app

from ..support.chromium import CHROMIUM, CHROMIUM_ARGS

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Generous: the machine is shared, and a poll ends as soon as the page agrees.
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)
# Records every state a job card shows and every step of the upload bar, so a
# test can assert the order of what a person saw (a transient "Pausing…"
# included), not just where the page ended up.
RECORDER = """
window.__seen = {states: [], upload: []};
new MutationObserver(() => {
  const note = (list, value) => { if (value && list[list.length - 1] !== value) list.push(value); };
  for (const el of document.querySelectorAll(".job .state")) note(window.__seen.states, el.textContent);
  const bar = document.querySelector(".uploading .bar");
  if (bar) note(window.__seen.upload, bar.getAttribute("aria-valuetext"));
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"No Chromium at {CHROMIUM}: run scripts/browser-deps (scripts/test does).")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
def serve(db, aiohttp_server, settings) -> Callable[..., Awaitable[TestServer]]:
    """The real app on a real port (127.0.0.1), on the test's own database."""

    async def serve(**overrides: Any) -> TestServer:
        return await aiohttp_server(create_app(settings.replace(**overrides)))

    return serve


@pytest.fixture
async def server(serve) -> TestServer:
    return await serve()


@pytest.fixture
async def api(aiohttp_client, server) -> TestClient:
    """The same server through its HTTP API, for what a test sets up or checks
    without the page (tests/support/helpers.py works with it)."""
    return await aiohttp_client(server)


@pytest.fixture
def open_page(browser) -> Callable[..., Awaitable[Page]]:
    """A fresh browser tab (its own session storage) at the console."""

    async def open_page(url: str, *, width: int = 1280, height: int = 860) -> Page:
        context = await browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        await context.add_init_script(RECORDER)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors  # type: ignore[attr-defined]
        await page.goto(url)
        return page

    return open_page


async def seen(page: Page, what: str) -> list[str]:
    """What the page has shown so far: "states" of job cards, or "upload" bar steps."""
    return await page.evaluate(f"window.__seen.{what}")


async def unlabelled(page: Page) -> list[str]:
    """Visible controls a screen reader could not name (no label, no ARIA name, no text)."""
    return await page.evaluate(
        """[...document.querySelectorAll("input, select, textarea, button")]
            .filter((el) => el.offsetParent !== null)
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
            .map((el) => el.outerHTML)"""
    )


async def screenshot(page: Page, name: str) -> None:
    """Saves docs/screenshots/NAME.png, shown in the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
