"""Headless Chromium for the review page tests, driven by selenium; never touches the network.

The driver is Debian's /usr/bin/chromedriver given explicitly, so selenium-manager never tries to
download one. Tests that need it skip where chromium, its driver or selenium is missing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def available() -> str:
    """Why the browser tests cannot run here, or "" when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (dev extra)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} not found (Debian packages chromium, chromium-driver)"
    return ""


def start(downloads: Path, width: int = 1400, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def wait_for_download(downloads: Path, name: str, timeout: float = 15.0) -> Path:
    path = downloads / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and not list(downloads.glob("*.crdownload")):
            return path
        time.sleep(0.05)
    pytest.fail(f"{name} was not downloaded to {downloads} within {timeout} s")
