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


def test_the_way_out_shows_a_result_now_and_switches_to_the_trained_embedding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the network trains, 'Show it now' shows the semantic result on an embedding that needs no training
    (the page's own Embedding widget is drawn already: the switch must not write to it), and once the trained
    embedding is on disk the page switches to it by itself."""
    import threading
    import time

    import numpy as np
    from PIL import Image

    import core.features.embedding as embedding
    import ui.data
    from core.data.datasets import load_dataset

    rng = np.random.default_rng(7)  # a folder no other test has embedded
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(30 if split == "train" else 6):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    spec = f"imagefolder:{tmp_path}"
    release = threading.Event()
    real_key, real_embed = embedding.cached_embedding_key, ui.data.embed

    def key_when_released(ds, cfg=embedding.EmbedConfig()):  # type: ignore[no-untyped-def]
        return real_key(ds, cfg) if release.is_set() else None

    def held_embed(ds, cfg=embedding.EmbedConfig(), **kw):  # type: ignore[no-untyped-def]
        if cfg.model == "trained":
            assert release.wait(120), "never released"
        return real_embed(ds, cfg, **kw)

    monkeypatch.setenv("REDEX_STEP_WAIT", "0.2")
    monkeypatch.setattr(embedding, "cached_embedding_key", key_when_released)
    monkeypatch.setattr(ui.data, "embed", held_embed)
    at = page("app.py", spec=spec)  # the whole app, from Home (its own Embedding widget): the choice must
    at.run()  # survive page switches
    at.switch_page("views/semantic.py").run()
    assert not at.exception
    assert any("trains on this dataset" in i.value for i in at.info)
    at.button(key="way_out_go").click().run()
    deadline = time.monotonic() + 120
    while any("Shown with" in c.value for c in at.caption) is False or at.session_state["embedding"] == "trained":
        assert not at.exception, at.exception
        assert time.monotonic() < deadline, "no stand-in result"
        time.sleep(0.5)
        at.run()
    assert at.session_state["embedding"] != "trained" and at.session_state["embedding_switch_back"]
    stand_in = at.session_state["embedding"]
    at.switch_page("views/map.py").run()  # another page shows the same stand-in, not the training's bar
    assert not at.exception, at.exception
    assert at.session_state["embedding"] == stand_in
    at.switch_page("views/semantic.py").run()
    release.set()
    ds = load_dataset(spec)
    while real_key(ds, embedding.EmbedConfig()) is None:
        assert time.monotonic() < deadline + 120, "the trained embedding never arrived"
        time.sleep(0.5)
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["embedding"] == "trained" and not at.session_state["embedding_switch_back"]
    assert not any("Shown with" in c.value for c in at.caption)
