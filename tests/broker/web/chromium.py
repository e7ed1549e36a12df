"""Real Chromium for the browser tests: Debian's `chromium` driven by Playwright for Python.

No browser is downloaded (`playwright install` is never run): Playwright launches the system
Chromium by path. A machine without it skips these tests, with the reason printed; in CI
(CI=true) a missing browser fails them, since `.ci/run` installs it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.broker.web.my_story import PASSWORD
from tests.conftest import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


def _needs(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"Chromium is required in CI: {reason}", pytrace=False)
    pytest.skip(f"Chromium not available on this machine: {reason}")


def launch() -> Iterator[Browser]:
    """One headless Chromium for a test module (each test opens its own context)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _needs("Debian's chromium package is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _needs("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, base_url: str, user: str, *, lang: str | None = None) -> None:
    """Sign in through the sign-in form, by mouse and keyboard as a person would."""
    page.goto(f"{base_url}/signin?next=/my" + (f"&lang={lang}" if lang else ""))
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("form[action='/signin'] button[type=submit]")
    page.wait_for_url(f"{base_url}/my")


def wait_for_marks(page: Page) -> None:
    """Wait until verify.js has checked every entry on the page."""
    # A selector wait, not a JS predicate: the page's CSP forbids the eval Playwright would need.
    page.wait_for_selector("html[data-verify-done='true']", state="attached")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (every rule axe runs by default)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in violations
    ]


def screenshot(page: Page, name: str) -> None:
    """Save the whole page as docs/screenshots/NAME.png (referenced from the README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
