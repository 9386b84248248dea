"""Headless Chromium (Debian's package) driven by Playwright, against the real stack.

Locally without Chromium these tests skip and say how to install it; in CI (CI set)
they fail instead. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

from tests.support.stack import SupervisedStack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver; skips (or fails in CI) without Debian's Chromium."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium for the session."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Console:
    """Errors the page reported: CSP violations, failed loads, script exceptions."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: list[str] = []

    def expect(self, text: str) -> None:
        """A test that provokes an error (a 422 page) declares it here."""
        self.expected.append(text)

    def on_message(self, message: ConsoleMessage) -> None:
        """Keep console errors a test did not declare."""
        if message.type == "error" and not any(t in message.text for t in self.expected):
            self.errors.append(message.text)

    def on_page_error(self, error: Exception) -> None:
        """Keep uncaught script errors."""
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def console() -> Console:
    """What the page's console said."""
    return Console()


@pytest.fixture
def page(browser: Browser, stack: SupervisedStack, console: Console) -> Iterator[Page]:
    """A fresh browser context on the stack's web; fails the test on any console error."""
    context = browser.new_context(base_url=stack.base_url, viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("console", console.on_message)
    page.on("pageerror", console.on_page_error)
    yield page
    context.close()
    assert console.errors == [], "the browser console reported errors"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under tests/browser/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
