"""Headless Chromium from Debian's packages (chromium, chromium-driver) driven by Selenium, for
the dashboard's browser tests and scripts/screenshots; Selenium Manager is never asked to fetch
a driver (the one Debian installs is named)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM: Final = "/usr/bin/chromium"
CHROMEDRIVER: Final = "/usr/bin/chromedriver"
INSTALL: Final = "apt-get install chromium chromium-driver (scripts/test does it as root)"


def missing() -> str | None:
    """Why no browser can start here (Selenium or Debian's Chromium missing), else None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).exists():
            found = shutil.which(Path(program).name)
            if found is None:
                return f"{program} is missing: {INSTALL}"
    return None


def start_browser(width: int = 1280, height: int = 800) -> WebDriver:
    """A headless Chromium whose console messages ``console_errors`` reads."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _found(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's own log goes nowhere: Service would otherwise write into the test's output.
    service = Service(executable_path=_found(CHROMEDRIVER), log_output=os.devnull)
    return webdriver.Chrome(service=service, options=options)


def console_errors(driver: WebDriver) -> list[str]:
    """The console's errors since the last read (each read empties the browser's log)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _found(program: str) -> str:
    return program if Path(program).exists() else shutil.which(Path(program).name) or program
