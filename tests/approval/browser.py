"""Playwright helpers for the approval page: a system Chromium, and one approver deciding one request."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 15_000


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless system Chromium (no browser download); skips without one, fails if services are required."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install Chromium to run the approval page's browser tests"
        if os.environ.get("GATEHOLD_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: Page, base_url: str, operator_key: str) -> None:
    """Sign in on the approval page; a no-op when the page's context already has a session, whoever's it is
    (use one browser context per operator)."""
    await page.goto(f"{base_url}/approvals/login", timeout=TIMEOUT_MS)
    if page.url.rstrip("/").endswith("/approvals/login"):
        await page.fill("#key", operator_key)
        async with page.expect_navigation(timeout=TIMEOUT_MS) as navigation:
            await page.click("form.login button[type=submit]")
        response = await navigation.value
        if response is None or response.status != 200 or not page.url.endswith("/approvals"):
            status = None if response is None else response.status
            raise AssertionError(f"sign-in refused (status {status}, at {page.url})")


async def approve_in_browser(page: Page, base_url: str, operator_key: str, approval_id: str, *,
                             approve: bool = True, comment: str = "", screenshot: Path | None = None) -> None:
    """Sign in as the operator, open the request, and approve (or deny) it with ``comment``.

    ``screenshot`` saves the detail page just before deciding. Raises ``AssertionError`` when the page
    refuses the decision (self-approval, no longer pending, ...).
    """
    await sign_in(page, base_url, operator_key)
    detail = f"{base_url}/approvals/{approval_id}"
    response = await page.goto(detail, timeout=TIMEOUT_MS)
    if response is None or response.status != 200:
        status = None if response is None else response.status
        raise AssertionError(f"request {approval_id} not shown (status {status})")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(screenshot), full_page=True)
    await page.fill("#comment", comment)
    async with page.expect_navigation(timeout=TIMEOUT_MS) as navigation:
        await page.click(f"form.decide button[value={'approve' if approve else 'deny'}]")
    decided = await navigation.value
    if decided is None or decided.status != 200 or page.url != detail:
        status = None if decided is None else decided.status
        text = await page.locator("main").inner_text()
        raise AssertionError(f"decision on {approval_id} refused (status {status}): {text.strip()}")
    state = await page.locator("#state").inner_text()
    # An approved request may already be "used" by the time the page reloads: its call went through.
    expected = ("approved", "used") if approve else ("denied",)
    if not any(word in state for word in expected):
        raise AssertionError(f"request {approval_id} shows {state!r}, expected {' or '.join(expected)}")
