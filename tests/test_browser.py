"""A real browser: `streamlit run` on a free port, Debian's chromium through Playwright, every page.

Screenshots are saved under artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

from ui.pages import PAGES

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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server and everything it started (its own process group): SIGTERM, then SIGKILL what is left."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.time() + 10
    while _group_alive(pgid) and time.time() < deadline:
        time.sleep(0.2)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)


def _serve(log_dir: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """`streamlit run app.py` on a free port until the generator is closed; yields (URL, process).

    The server runs in a process group of its own, stopped with all its children in a `finally`: no
    process outlives the tests (test_no_server_outlives_its_fixture)."""
    port = _free_port()
    log = open(log_dir / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not answer on {url}: {open(log.name).read()[-2000:]}")
        yield url, proc
    finally:
        stop_group(proc)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    for url, _ in _serve(tmp_path_factory.mktemp("server"), {}):
        yield url


@pytest.fixture(scope="module")
def scale_server(scale_job, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The app opened on a Ray result folder (REDEX_DATASET=scale:FOLDER)."""
    for url, _ in _serve(tmp_path_factory.mktemp("scale-server"), {"REDEX_DATASET": f"scale:{scale_job[1]}"}):
        yield url


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
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
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


# Streamlit ends a label that does not fit with an ellipsis on its markdown container
LABELS = ("[data-testid='stWidgetLabel'] [data-testid='stMarkdownContainer'], "
          "[data-testid='stMetricLabel'] [data-testid='stMarkdownContainer']")
CUT_LABELS = (f'() => [...document.querySelectorAll("{LABELS}")]'
              ".filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)")


@pytest.mark.parametrize("path", [p for p, _, _ in PAGES], ids=lambda p: Path(p).stem)
def test_page_in_a_real_browser(server: str, browser, path: str) -> None:  # type: ignore[no-untyped-def]
    page = _open(browser, f"{server}/{_url_path(path)}", Path(path).stem)
    assert page.evaluate(CUT_LABELS) == [], "a label is cut off at 1280 px"
    page.close()


def test_a_first_request_by_url_on_a_fresh_server_shows_the_apps_navigation(browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for url, _ in _serve(tmp_path, {}):
        page = _open(browser, f"{url}/near_duplicates", "fresh-deep-link")
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert [t for t, _ in [(title, 0) for _, title, _ in PAGES] if t not in nav] == [], nav
        assert "app" not in nav.split() and page.locator("h1").first.inner_text().strip() == "Near-duplicates"


def test_result_folder_in_a_real_browser(scale_server: str, browser) -> None:  # type: ignore[no-untyped-def]
    home = _open(browser, scale_server, "scale-home")
    assert "A Ray result folder of imagefolder:" in home.inner_text("[data-testid='stMain']")
    home.close()
    page = _open(browser, f"{scale_server}/near_duplicates", "scale-near_duplicates")
    removed = page.locator("[data-testid='stMetric']", has_text="Images removed")
    assert removed.locator("[data-testid='stMetricValue']").inner_text().strip() == "15"
    assert page.locator("[data-testid='stImage'] img").count() > 0  # thumbnails read back from the source files
    page.close()


@pytest.fixture(scope="module")
def training_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A fresh server and an empty cache on a folder whose embedding network trains for a while."""
    from core.data.synthetic import write_planted_folder

    root = tmp_path_factory.mktemp("slow-planted")
    write_planted_folder(root, n_classes=4, per_class=40, seed=3)  # 64x64: about a minute of training here
    logs = tmp_path_factory.mktemp("training-server")
    env = {"REDEX_DATASET": f"imagefolder:{root}", "REDEX_CACHE_DIR": str(logs / "cache"), "REDEX_STEP_WAIT": "1",
           "REDEX_LOG": "INFO"}
    for url, _ in _serve(logs, env):
        yield url, logs


def _progress_text(page, label: str = "Embedding (trained)") -> str:  # type: ignore[no-untyped-def]
    """The text of the progress bar of the step `label` once it shows (earlier steps show theirs first)."""
    bar = page.locator(f"[data-testid='stProgress']:has-text('{label}')").first
    bar.wait_for(timeout=120_000)
    return str(bar.inner_text())


@pytest.mark.slow  # a minute or two of training: `make test-all` runs it, the default suite does not
def test_training_survives_two_tabs_a_reload_and_a_page_change(training_server, browser) -> None:  # type: ignore[no-untyped-def]
    url, logs = training_server
    semantic = browser.new_page(viewport={"width": 1280, "height": 900})
    semantic.goto(f"{url}/", wait_until="domcontentloaded")  # the app's own navigation, then its page
    semantic.get_by_role("link", name="Semantic redundancy").click()
    assert "Embedding (trained)" in _progress_text(semantic)

    home = browser.new_page(viewport={"width": 1280, "height": 900})  # a second tab sees the same job
    home.goto(url, wait_until="domcontentloaded")
    home.wait_for_selector("[data-testid='stMetric']:has-text('Train/test leakage')", timeout=120_000)
    assert "Embedding (trained)" in _progress_text(home)
    home.locator("[data-testid='stProgress']:has-text('pass')").first.wait_for(timeout=120_000)  # live progress
    SHOTS.mkdir(parents=True, exist_ok=True)
    home.screenshot(path=str(SHOTS / "job-running-home.png"), full_page=True)

    semantic.reload(wait_until="domcontentloaded")  # a reload attaches to the running job
    assert "Embedding (trained)" in _progress_text(semantic)
    semantic.get_by_role("link", name="Map").click()  # a page change does not stop it either
    semantic.locator("[data-testid='stMain'] [data-testid='stProgress']:has-text('Embedding')").wait_for(timeout=60_000)
    semantic.screenshot(path=str(SHOTS / "job-running-map.png"), full_page=True)

    # the finished network appears by itself in both tabs, without a click
    home.wait_for_selector("[data-testid='stMetric']:has-text('Semantic redundancy')", timeout=400_000)
    semantic.wait_for_selector("[data-testid='stPlotlyChart']", timeout=400_000)
    assert semantic.locator("[data-testid='stException']").count() == 0
    assert home.locator("[data-testid='stException']").count() == 0
    log = (logs / "streamlit.log").read_text()
    first_epochs = [line for line in log.splitlines() if "redex.training: pass 1/" in line]
    assert len(first_epochs) == 1, f"the network was trained {len(first_epochs)} times:\n{log[-3000:]}"
    assert "resuming from" not in log
    cache = logs / "cache" / "v1"
    assert len(list(cache.glob("classifier-*.npz"))) == 1 and not list(cache.glob("*.ckpt.npz"))
    semantic.close()
    home.close()


def _judged_text(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.locator("[data-testid='stProgress']").first.inner_text())


def _pair_line(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.locator("[data-testid='stMain'] p:has-text('found by')").first.inner_text())


def _wait_judged(page, n: int) -> None:  # type: ignore[no-untyped-def]
    page.locator(f"[data-testid='stProgress']:has-text('{n} of ')").first.wait_for(timeout=60_000)


def test_review_judges_with_the_keyboard_and_a_restarted_server_keeps_every_judgment(  # type: ignore[no-untyped-def]
        browser, tmp_path: Path) -> None:
    import json

    env = {"REDEX_CACHE_DIR": str(tmp_path / "cache"), "REDEX_JUDGMENTS_DIR": str(tmp_path / "judgments")}
    first = _serve(tmp_path, env)
    url, _ = next(first)
    page = _open(browser, f"{url}/review", "review-start")
    page.locator("h1").first.click()  # focus the page, not a widget: keys go to the shortcuts
    for n, key in enumerate(["1", "2", "4", "3"], start=1):  # same photo, near-duplicate, different, similar
        page.keyboard.press(key)
        _wait_judged(page, n)
    assert "Pair 5 of" in _pair_line(page)
    page.keyboard.press("ArrowLeft")  # back to pair 4: it shows its judgment
    page.locator("[data-testid='stMarkdownContainer']:has-text('judged Similar but different')").first.wait_for(
        timeout=60_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "review-judged.png"), full_page=True)
    page.keyboard.press("ArrowRight")  # pair 5: judge it by mistake, then take it back at once from pair 6
    page.locator("[data-testid='stMain'] p:has-text('Pair 5 of')").first.wait_for(timeout=60_000)
    page.locator("h1").first.click()
    page.keyboard.press("1")
    _wait_judged(page, 5)
    assert "Pair 6 of" in _pair_line(page)
    page.keyboard.press("Backspace")
    _wait_judged(page, 4)
    page.locator("[data-testid='stMain'] p:has-text('Pair 5 of')").first.wait_for(timeout=60_000)
    assert "not judged yet" in _pair_line(page), "Backspace went back to the pair and took its judgment back"
    page.close()
    first.close()  # the server stops (SIGTERM), as on a restart

    [saved] = list((tmp_path / "judgments").glob("*.json"))
    labels = [j["label"] for j in json.loads(saved.read_text())["judgments"]]
    assert labels == ["same", "near", "different", "similar"]

    second = _serve(tmp_path, env)
    url, _ = next(second)
    page = _open(browser, f"{url}/review", "review-after-restart")
    assert "4 of" in _judged_text(page)
    assert "Pair 5 of" in _pair_line(page)  # it opens at the first pair not judged yet
    page.close()
    second.close()


def test_no_server_outlives_its_fixture(tmp_path: Path) -> None:
    """A served app, closed as a fixture closes it, leaves no process of its group and no open port behind."""
    serving = _serve(tmp_path, {})
    url, proc = next(serving)
    assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).read().strip() == b"ok"
    serving.close()  # what pytest does at the fixture's teardown
    assert proc.poll() is not None and not _group_alive(proc.pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)


def test_no_page_requests_anything_outside_the_app(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Offline users see every page: on a fresh server, no page asks any host but the app's own (no web font,
    no icon, no tracker)."""
    from urllib.parse import urlparse

    asked: list[str] = []
    for url, _ in _serve(tmp_path, {}):
        own = urlparse(url).netloc
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.on("request", lambda r: asked.append(r.url))
        for path, _, _ in PAGES:
            page = context.new_page()
            page.goto(f"{url}/{_url_path(path)}", wait_until="networkidle")
            page.wait_for_function("() => document.querySelector(\"[data-testid='stApp']\")"
                                   "?.getAttribute('data-test-script-state') === 'notRunning'", timeout=240_000)
            page.close()
        context.close()
        outside = sorted({u for u in asked if urlparse(u).scheme in ("http", "https", "ws", "wss")
                          and urlparse(u).netloc != own})
        assert asked and outside == [], outside
