"""Screenshots of the app's pages for docs/screenshots/: `python -m bench.screenshots [DATASET]`.

Starts `streamlit run` on a free port with REDEX_DATASET set, drives Debian's chromium through
Playwright, and saves one full-height PNG per page.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from playwright.sync_api import sync_playwright

    from bench.common import launch_chromium, stop_server, wait_healthy

    dataset = sys.argv[1] if len(sys.argv) > 1 else "digits"
    pages = sys.argv[2:] or ["", "map", "near_duplicates", "semantic", "experiments", "report", "export"]
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)], cwd=ROOT,
                            env={**os.environ, "REDEX_DATASET": dataset}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            for name in pages:  # each opened by its URL, the first one on a fresh server
                page = browser.new_page(viewport={"width": 1400, "height": 2200})
                page.goto(f"{url}/{name}")
                done = ("() => { const a = document.querySelector(\"[data-testid='stApp']\");"
                        " return a && a.getAttribute('data-test-script-state') === 'notRunning'"
                        " && document.querySelectorAll('h1').length > 0"
                        " && ![...document.querySelectorAll(\"[data-testid='stMain'] [data-testid='stProgress']\")]"
                        ".some(e => !e.innerText.includes(' judged')); }")  # the Review page's own bar is no job
                for _ in range(300):  # finished, and no background job of the page running, 3 s apart
                    page.wait_for_function(done, timeout=900_000)
                    page.wait_for_timeout(3000)
                    if page.evaluate(done):
                        break
                tag = Path(dataset.partition(":")[2] or dataset).name.replace("-jpg", "")
                page.screenshot(path=str(out / f"{tag}-{name or 'home'}.png"), full_page=True)
                page.close()
            browser.close()
    finally:
        stop_server(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
