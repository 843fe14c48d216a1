"""A real headless browser for the page tests: Debian's chromium driven by playwright.

Skips (with the reason) where either is missing: `.ci/run` installs both; elsewhere
`apt-get install chromium` and `pip install playwright` (no browser download: the
system chromium is used). ``REIDDATA_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import os
import shutil

import pytest

# flags from the machine notes: no sandbox as root, and no background connections
# (this machine's network is closed; chromium would keep trying)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return os.environ.get("REIDDATA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")  # not session: while playwright runs, its event loop is the thread's
def browser():  # (the loopback servers of other modules start their own loops in this thread)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; .ci/run installs it)")
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium binary (apt-get install chromium; .ci/run installs it)")
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=path, args=FLAGS)
        except Exception as exc:  # noqa: BLE001 - a browser that cannot start is a skip with its reason
            pytest.skip(f"chromium at {path} did not start: {exc}")
        yield launched
        launched.close()


class Page:
    """A page opened from disk, collecting console errors and uncaught exceptions."""

    def __init__(self, browser, url: str) -> None:
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def visible_images(self) -> list[dict]:
        """Every visible <img>, after it loaded: its src and naturalWidth."""
        self.page.wait_for_function("[...document.images].every((i) => i.complete)")
        return self.page.evaluate(
            """[...document.images].filter((i) => i.offsetParent !== null)
               .map((i) => ({src: i.getAttribute('src'), width: i.naturalWidth}))"""
        )

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def close(self) -> None:
        self.page.close()
