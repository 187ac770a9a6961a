"""Headless Chromium for the explorer's tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download is never used: ``executable_path`` points at the system
browser. ``ANNOSTREAM_REQUIRE_BROWSER=1`` (CI) turns a missing browser into an error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = os.environ.get("ANNOSTREAM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def available() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def require() -> None:
    why = available()
    if why is None:
        return
    if os.environ.get("ANNOSTREAM_REQUIRE_BROWSER") == "1":
        raise RuntimeError(why)
    pytest.skip(why)


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless browser (Playwright ``Browser``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
