"""Debian's Chromium driven by Playwright's Python client, for the browser tests.

Playwright's own browser download is never used: the tests launch the distribution's
binary (``/usr/lib/chromium/chromium``, the real one; ``/usr/bin/chromium`` is a shell
wrapper that sources ``/etc/chromium.d``), with every host name but loopback unresolvable
so the browser cannot reach out. Without Chromium the browser tests skip with a message,
except in CI (``CI=true``), where ``.ci/run`` installs it and its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("GATE_CHROMIUM") or next(
    (p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium")) if p and Path(p).exists()),
    None,
)
OFFLINE_ARGS = [
    "--no-sandbox",  # as root (CI) the sandbox cannot start
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]
VIEWPORT = {"width": 1280, "height": 800}


def launch(**options):
    """A started Playwright and a Chromium browser; skip (or fail in CI) without one.
    (One Playwright per process: further browsers come from ``another_browser``.)"""
    if CHROMIUM is None:
        message = "no Chromium: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    args = [*OFFLINE_ARGS, *options.pop("args", [])]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, **options)
    return playwright, browser


def another_browser(browser, args: list[str]):
    """A second Chromium with more command-line flags, from the same Playwright."""
    return browser.browser_type.launch(executable_path=CHROMIUM, args=[*OFFLINE_ARGS, *args])


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)  # generous: a busy 2-core CI machine, never a limit
    playwright, browser = launch()
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()
