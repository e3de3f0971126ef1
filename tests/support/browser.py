"""Headless Chromium for page tests, driven by Playwright's Python package.

Needs Debian's chromium (`apt-get install chromium`; .ci/run installs it) and the
playwright package (the test extra). Playwright cannot download browsers of its own
here, so it launches the system's. Without them a page test fails: it never passes
without having looked at the page. PIANO_SCREENSHOT_DIR keeps copies of screenshots.
"""
from __future__ import annotations

import os
import shutil
import struct

import pytest

CHROMIUM = os.environ.get("PIANO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read(32)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def keep_screenshot(path) -> None:
    keep = os.environ.get("PIANO_SCREENSHOT_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(path, keep)


@pytest.fixture
def browser():
    assert os.path.exists(CHROMIUM), (f"no Chromium at {CHROMIUM}: apt-get install chromium "
                                      f"(.ci/run installs it), or set PIANO_CHROMIUM")
    from playwright.sync_api import sync_playwright  # the test extra; an ImportError fails the test

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()
