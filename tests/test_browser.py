"""A real browser: `streamlit run` on a free port, Debian's chromium through Playwright, every page.

Screenshots are saved under artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ui.pages import PAGES

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser-deps installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(log_dir: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """`streamlit run app.py` on a free port until the generator is closed; yields its URL."""
    port = _free_port()
    log = open(log_dir / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not answer on {url}: {open(log.name).read()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from _serve(tmp_path_factory.mktemp("server"), {})


@pytest.fixture(scope="module")
def scale_server(scale_job, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The app opened on a Ray result folder (REDEX_DATASET=scale:FOLDER)."""
    yield from _serve(tmp_path_factory.mktemp("scale-server"), {"REDEX_DATASET": f"scale:{scale_job[1]}"})


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _url_path(path: str) -> str:
    stem = Path(path).stem
    return "" if stem == "home" else stem


def _open(browser, url: str, shot: str):  # type: ignore[no-untyped-def]
    """A page loaded and finished running (no skeletons, a title), screenshotted, with no exception box."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    page.wait_for_function(
        "() => { const a = document.querySelector(\"[data-testid='stApp']\");"
        " return a && a.getAttribute('data-test-script-state') === 'notRunning'"
        " && document.querySelectorAll(\"[data-testid='stSkeleton']\").length === 0"
        " && document.querySelectorAll(\"h1\").length > 0; }", timeout=240_000)
    page.wait_for_timeout(1500)  # let plotly and images paint before the screenshot
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()
    assert page.locator("h1").first.inner_text().strip()
    return page


@pytest.mark.parametrize("path", [p for p, _, _ in PAGES], ids=lambda p: Path(p).stem)
def test_page_in_a_real_browser(server: str, browser, path: str) -> None:  # type: ignore[no-untyped-def]
    _open(browser, f"{server}/{_url_path(path)}", Path(path).stem).close()


def test_result_folder_in_a_real_browser(scale_server: str, browser) -> None:  # type: ignore[no-untyped-def]
    home = _open(browser, scale_server, "scale-home")
    assert "A Ray result folder of imagefolder:" in home.inner_text("[data-testid='stMain']")
    home.close()
    page = _open(browser, f"{scale_server}/near_duplicates", "scale-near_duplicates")
    removed = page.locator("[data-testid='stMetric']", has_text="Images removed")
    assert removed.locator("[data-testid='stMetricValue']").inner_text().strip() == "15"
    assert page.locator("[data-testid='stImage'] img").count() > 0  # thumbnails read back from the source files
    page.close()
