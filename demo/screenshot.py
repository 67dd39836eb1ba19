"""A screenshot of a demo's timeline page in real Chromium (for the README: docs/img/timeline.png).

Owns only driving the browser: open the page, type a filter, jump to a step, take the picture.
    python -m demo.screenshot demo/out/timeline.html docs/img/timeline.png [--text node3] [--step crash]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--text", default="node3", help="the free-text filter to type")
    parser.add_argument("--step", default="crash", help="the step to scroll to")
    args = parser.parse_args(argv)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.goto(args.page.resolve().as_uri())
        page.fill("#text", args.text)
        page.evaluate("step => document.getElementById('step-' + step).scrollIntoView()", args.step)
        page.evaluate("window.scrollBy(0, -document.querySelector('header').offsetHeight - 8)")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.output))
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
