"""The example page in headless Chromium: the bar reaches 100 % and the download link appears.

Skipped when no browser is installed, unless KOODRIVE_REQUIRE_BROWSER=1 (CI sets it):
then a missing browser fails the test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from app_support import APPS, running_app

pytestmark = pytest.mark.browser

# The closed network of CI refuses most of what Chromium would fetch on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> str:
    """The system Chromium's path; skip (or fail, when it is required) without one."""
    path = os.environ.get("KOODRIVE_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
    )
    missing = None
    if path is None or not os.access(path, os.X_OK):
        missing = "no Chromium installed (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (the test extra)"
    if missing is not None:
        if os.environ.get("KOODRIVE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"KOODRIVE_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    assert path is not None
    return path


@pytest.mark.parametrize("name", APPS)
async def test_the_bar_reaches_100_and_the_download_link_appears(name: str, tmp_path: Path) -> None:
    """Click the button; the bar fills through the task's progress; at 100 % the link is shown and works."""
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with running_app(name) as app, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        context = await browser.new_context()
        try:
            page = await context.new_page()
            errors: list[Any] = []
            seen: list[str] = []

            def page_error(error: Any) -> None:
                errors.append(error)

            def record(value: str) -> None:
                seen.append(value)

            page.on("pageerror", page_error)
            await page.expose_function("recordProgress", record)
            await page.goto(f"{app.url}/")
            # Watch the bar from inside the page: every value it shows, in order.
            await page.evaluate(
                """() => new MutationObserver(() => window.recordProgress(
                        document.getElementById("bar").getAttribute("aria-valuenow")))
                    .observe(document.getElementById("bar"), {attributes: true})"""
            )
            await page.click("#start")
            link = page.locator("#download")
            await link.wait_for(state="visible", timeout=15_000)
            await page.screenshot(path=str(tmp_path / f"{name}.png"))
            assert await page.get_attribute("#bar", "aria-valuenow") == "100"
            assert await page.text_content("#percent") == "100 %"
            assert await page.text_content("#status") == "Done."
            href = await link.get_attribute("href")
            assert href is not None
            assert href.startswith(app.emulator.url)
            response = await context.request.get(href)
            assert response.ok
            assert (await response.body()).startswith(b"PK")
            assert errors == []
        finally:
            await context.close()
            await browser.close()
    values = [int(v) for v in seen]
    assert values == sorted(values)
    assert len(set(values)) >= 3  # the bar moved through the task, not straight to 100
    assert values[-1] == 100
