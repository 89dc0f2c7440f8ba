"""Photographs each view of a running dashboard for the README (run by scripts/screenshots):
``python scripts/_screenshots.py URL OUT_DIR`` writes OUT_DIR/dashboard-<view>.png;
``python scripts/_screenshots.py --traffic``, run in the NER project, queries it until killed
(online queries at an uneven pace, an offline query now and then), for the charts."""

from __future__ import annotations

import itertools
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.browser import console_errors, start_browser

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

WIDTH = 1280
# view name, path, what must be on the page before it is photographed
VIEWS = [
    ("groups", "/", "table.groups tr[data-group]"),
    ("group", "/groups/ner", "figure[data-chart] path.line"),
    ("models", "/models", "section[data-model] tr[data-version]"),
    ("graph", "/graph", "tr[data-feature]"),
]


def traffic() -> None:
    """Query the NER project in the working directory until killed."""
    sys.path.insert(0, str(Path.cwd()))
    from documents import documents  # noqa: PLC0415 - the NER example, found at run time
    from features import Document  # noqa: PLC0415

    from chalk.client import ChalkClient  # noqa: PLC0415

    client = ChalkClient()
    texts = documents(400)
    rng = random.Random(8)
    last_batch = time.monotonic()
    for row in itertools.count(1):
        client.query(
            input={Document.id: row, Document.text: texts[row % len(texts)]},
            output=[Document.entities],
        )
        if time.monotonic() - last_batch > 20:
            batch = rng.randint(50, 200)
            client.offline_query(
                input={Document.id: list(range(batch)), Document.text: texts[:batch]},
                output=[Document.entities],
            )
            last_batch = time.monotonic()
        time.sleep(rng.uniform(0.02, 0.25))


def main(url: str, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    browser = start_browser(WIDTH, 800)
    try:
        for name, path, ready in VIEWS:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            browser.get(url.rstrip("/") + path)
            _wait_for(browser, ready, path)
            time.sleep(2.5)  # a few polls: the charts drawn, the "updated" time current
            # Down to the end of the content (the overview of one group is short).
            height = browser.execute_script(
                "return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)"
            )
            # The whole page, not just the first screen: the viewport is what is photographed.
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": WIDTH,
                    "height": max(320, int(height)),
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
            )
            time.sleep(0.5)
            target = out / f"dashboard-{name}.png"
            browser.save_screenshot(str(target))
            print(f"    {target}")
        errors = console_errors(browser)
    finally:
        browser.quit()
    if errors:
        print("the page logged errors:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    return 0


def _wait_for(browser: WebDriver, selector: str, path: str) -> None:
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if browser.execute_script(f"return !!document.querySelector({selector!r})"):
            return
        time.sleep(0.2)
    raise SystemExit(f"{path}: nothing matching {selector} within 60 s")


if __name__ == "__main__":
    if sys.argv[1:] == ["--traffic"]:
        traffic()
    else:
        sys.exit(main(sys.argv[1], Path(sys.argv[2])))
