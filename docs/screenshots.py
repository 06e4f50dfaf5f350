"""Screenshots of the built site, for looking at it the way a reader does.

    .venv/bin/sphinx-build -W -b html docs docs/_build
    .venv/bin/python docs/screenshots.py

Opens the landing page, the tutorial and the Python API reference in headless Chromium
(Debian's chromium and chromium-driver, as tests/test_browser_admin.py uses) and writes
docs/site-*.png.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

DOCS = Path(__file__).resolve().parent
BUILD = DOCS / "_build"
PAGES = {"site-index.png": "index.html", "site-tutorial.png": "tutorial.html",
         "site-reference.png": "reference/api.html"}


def main() -> int:
    if not (BUILD / "index.html").exists():
        print(f"build the site first: sphinx-build -W -b html docs {BUILD}", file=sys.stderr)
        return 1
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--window-size=1360,1000"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
        driver = webdriver.Chrome(service=service, options=options)
        try:
            for name, page in PAGES.items():
                driver.get((BUILD / page).as_uri())
                driver.save_screenshot(str(DOCS / name))
                print(DOCS / name)
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
