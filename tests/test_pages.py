"""Every page renders on digits; each slider moves the number it should; export writes a full manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import metric, page

from ui.pages import PAGES


@pytest.mark.parametrize("path", [p for p, _, _ in PAGES], ids=lambda p: Path(p).stem)
def test_page_renders_without_exception(path: str) -> None:
    at = page(path).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title, "every page has a title"


def test_app_frame_runs() -> None:
    at = page("app.py").run()
    assert not at.exception, [e.value for e in at.exception]


def test_hamming_slider_changes_the_counts() -> None:
    at = page("views/near_duplicates.py").run()
    removed_4 = metric(at, "Images removed")
    at.slider(key="radius").set_value(8).run()
    removed_8 = metric(at, "Images removed")
    assert removed_8 > removed_4 > 0
    at.slider(key="radius").set_value(0).run()
    assert metric(at, "Images removed") < removed_4
    assert not at.exception


def test_keep_fraction_slider_changes_the_counts() -> None:
    at = page("views/semantic.py").run()
    assert metric(at, "Kept (required)") == 1212  # round(0.9 * 1347)
    at.slider(key="keep_fraction").set_value(0.5).run()
    assert metric(at, "Kept (required)") == 674  # round(0.5 * 1347) (no ties in these distances)
    at.radio(key="sem_mode").set_value("distance threshold").run()
    at.slider(key="distance").set_value(0.0).run()
    assert metric(at, "Redundant") == 0
    assert not at.exception


def test_settings_arriving_from_another_page() -> None:
    at = page("views/home.py")
    at.session_state["radius"] = 8
    at.session_state["keep_fraction"] = 0.5
    at.run()
    assert not at.exception
    hash_removed = [m for m in at.metric if m.label.startswith("Near-duplicates")][0]
    assert "≤ 8 bits" in hash_removed.label
    assert str([m for m in at.metric if m.label == "Semantic redundancy"][0].value) == "673 removed"


def test_export_page_writes_a_complete_manifest(tmp_path: Path) -> None:
    at = page("views/export.py").run()
    target = tmp_path / "out"
    at.text_input(key="export_target").set_value(str(target)).run()
    at.button(key="export_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    doc = json.loads((target / "manifest.json").read_text())
    assert doc["kept"] + doc["removed"] == 1347 == len(doc["images"])
    assert len(list((target / "images").rglob("*.png"))) == doc["kept"]
    at.button(key="export_go").click().run()  # a second export into the now non-empty folder is refused
    assert at.error and "not empty" in at.error[0].value


def test_bad_dataset_shows_an_error_box_not_a_traceback(tmp_path: Path) -> None:
    at = page("views/near_duplicates.py")
    at.session_state["dataset"] = f"imagefolder:{tmp_path / 'absent'}"
    at.run()
    assert not at.exception
    assert at.error and "not found" in at.error[0].value


def test_allow_list_refuses_other_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDEX_DATA_ROOTS", str(tmp_path / "allowed"))
    at = page("views/home.py")
    at.session_state["dataset"] = "imagefolder:/etc"
    at.run()
    assert not at.exception
    assert at.error and "outside the folders" in at.error[0].value


def test_report_page_builds_the_file_and_offers_it() -> None:
    at = page("views/report.py").run()
    assert not at.exception and "Build the report" in [b.label for b in at.button]
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    downloads = [d for d in at.get("download_button") if d.proto.label == "Download report.html"]
    assert downloads, "the built report is offered for download"
    assert any("MB. Preview" in c.value for c in at.caption)
