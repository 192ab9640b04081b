"""The report: one self-contained file, escaped names, no request in a real browser, a PDF with the headline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from core.data.datasets import load_image_folder
from core.pipelines.report import build_report, to_pdf, write_report
from core.pipelines.settings import NearDupSettings, Settings

SHOTS = ROOT / "artifacts" / "screenshots"
EVIL = "<img src=x onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("summary", "per-class", "clusters", "leakage", "retraining", "settings")


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A planted folder whose first class is named like HTML, and its report."""
    from core.data.synthetic import write_planted_folder

    root = tmp_path_factory.mktemp("evil-report")
    write_planted_folder(root, n_classes=3, per_class=12, seed=5)
    for split in ("train", "test"):
        (root / split / "class0").rename(root / split / EVIL)
    ds = load_image_folder(root)
    settings = Settings(f"imagefolder:{root}", NearDupSettings(method="hash", radius=8))
    page = build_report(ds, settings, clusters=3, leaks=3)
    return write_report(page, root.parent / "evil-report.html"), page


def test_the_report_holds_every_section_and_escapes_every_name(evil_report) -> None:  # type: ignore[no-untyped-def]
    path, page = evil_report
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert all(f'<section id="{s}">' in page for s in SECTIONS)
    assert "default-src 'none'" in page and "<script" not in page
    outside = [m for m in re.findall(r'(?:src|href)="([^"]*)"', page) if not m.startswith("data:")]
    assert outside == [], "every image is inlined; nothing points outside the file"
    assert "Not measured yet." in page and "python -m core evidence --dataset imagefolder:" in page
    assert path.read_text(encoding="utf-8") == page


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser-deps installs it)")
def test_the_report_renders_offline_and_requests_nothing(evil_report) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    path, _ = evil_report
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
        requests: list[str] = []
        dialogs: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(path.resolve().as_uri(), wait_until="load")
        for section in SECTIONS:
            assert page.locator(f"section#{section}").is_visible()
        assert page.locator("section#per-class svg rect").count() >= 3, "the per-class chart is drawn"
        images = page.locator("img")
        assert images.count() >= 3 and all(images.nth(i).evaluate("i => i.naturalWidth > 0")
                                           for i in range(images.count())), "every inlined image decodes"
        assert EVIL in page.locator("section#per-class table").inner_text(), "the class name shows as text"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
        browser.close()
    assert dialogs == [], "a name ran as script"
    assert requests == [path.resolve().as_uri()], f"the report asked for more than itself: {requests}"


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser-deps installs it)")
def test_the_pdf_has_its_pages_and_the_headline_figures(evil_report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pypdf import PdfReader

    path, page = evil_report
    pdf = to_pdf(path, tmp_path / "report.pdf")
    reader = PdfReader(str(pdf))
    text = " ".join(p.extract_text() for p in reader.pages)
    assert 2 <= len(reader.pages) <= 8
    headline = re.search(r'<div class="card"><b[^>]*>([\d,]+)</b>near-duplicates', page)
    assert headline is not None
    assert "Redundancy report" in text and f"{headline.group(1)} near-duplicates" in text.replace("\n", " ")
    assert "Not measured yet" in text
