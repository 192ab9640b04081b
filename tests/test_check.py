"""Checking images that arrive later: planted copies of training and test images find their originals, new photos
find nothing, an unreadable file is named and skipped, a judgment wins over the score, nothing is written."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, tree_snapshot
from PIL import Image, ImageEnhance

from core.data.datasets import TEST, TRAIN, load_image_folder
from core.data.judgments import JudgmentStore
from core.data.synthetic import base_image
from core.pipelines.check import check_images, folder_files, read_images
from core.pipelines.settings import NearDupSettings
from core.selections.candidates import shifted

EVIL = "<img src=x onerror=alert(1)>.png"
COPIES = {
    "shift": lambda im: Image.fromarray(shifted(np.asarray(im)[None], 2, -2)[0]),
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
    "jpeg": lambda im: im,  # saved as JPEG below
}


@pytest.fixture(scope="module")
def arrivals(planted_folder, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A folder of new images: copies of 4 training and 2 test images, 5 new photos, a broken file."""
    root, _ = planted_folder
    new = tmp_path_factory.mktemp("arrivals")
    sources = sorted((root / "train").rglob("b00[6-9].png"))[:4] + sorted((root / "test").rglob("t00[6-9].png"))[:2]
    truth = {}
    for k, src in enumerate(sources):
        kind = list(COPIES)[k % len(COPIES)]
        im = COPIES[kind](Image.open(src).convert("RGB"))
        name = f"copy{k}_{kind}." + ("jpg" if kind == "jpeg" else "png")
        im.save(new / name, quality=75) if kind == "jpeg" else im.save(new / name)
        truth[name] = src.relative_to(root).as_posix()
    rng = np.random.default_rng(99)
    for k in range(5):
        base_image(rng).save(new / f"other{k}.png")
    (new / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (new / "sub").mkdir()
    Image.open(sources[0]).save(new / "sub" / EVIL)  # an exact copy, under a hostile name
    truth[f"sub/{EVIL}"] = sources[0].relative_to(root).as_posix()
    return root, new, truth


def test_copies_find_their_originals_and_new_photos_nothing(arrivals) -> None:  # type: ignore[no-untyped-def]
    root, new, truth = arrivals
    before = tree_snapshot(root)
    ds = load_image_folder(root)
    images, names, skipped = read_images(folder_files(new), ds.image_shape[:2])
    assert [s.path for s in skipped] == ["broken.png"] and "not an image" in skipped[0].reason
    result = check_images(ds, images, names, NearDupSettings(min_score=0.9), skipped=skipped)
    index_of = {str(i): n for n, i in enumerate(ds.ids)}
    for i, name in enumerate(names):
        split = TEST if "/test/" in f"/{truth.get(name, '')}" else TRAIN
        r = result.best(i, split)
        if name in truth:
            assert r is not None and int(result.match[r]) == index_of[truth[name]], name
            assert result.duplicate[r], (name, float(result.score[r]))
        else:
            assert not any(result.duplicate[result.query == i]), (name, result.score[result.query == i].max())
    found = {names[int(i)] for s in (TRAIN, TEST) for i in result.in_dataset(s)}
    assert found == set(truth), "recall and precision 1 on the planted arrivals"
    exact = names.index(f"sub/{EVIL}")
    assert result.identical[exact] == index_of[truth[f"sub/{EVIL}"]]
    assert tree_snapshot(root) == before, "the dataset's files are only read"


def test_a_judgment_of_the_identical_image_wins_over_the_score(arrivals, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root, new, truth = arrivals
    monkeypatch.setenv("REDEX_JUDGMENTS_DIR", str(tmp_path))
    ds = load_image_folder(root)
    leak = next(n for n, i in enumerate(ds.ids) if str(i).endswith("leak_b001.png"))
    twin = Image.open(root / str(ds.ids[leak]))
    twin.save(tmp_path / "again.png")  # the very pixels of a dataset test image
    images, names, _ = read_images([("again.png", tmp_path / "again.png")], ds.image_shape[:2])
    first = check_images(ds, images, names)
    r = first.best(0, TRAIN)
    assert r is not None and first.duplicate[r] and first.judgment[r] == ""
    JudgmentStore(ds.fingerprint).judge(leak, int(first.match[r]), "different", "leakage")
    again = check_images(ds, images, names)
    r = again.best(0, TRAIN)
    assert r is not None and not again.duplicate[r] and again.judgment[r] == "different"


def test_the_cli_lists_each_image_and_writes_every_match(arrivals, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv

    root, new, truth = arrivals
    out = subprocess.run([sys.executable, "-m", "core", "check", "--dataset", f"imagefolder:{root}", "--images",
                          str(new), "--csv", str(tmp_path / "m.csv")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "skipped broken.png: not an image" in out.stdout
    assert "already in train: 5" in out.stdout and "already in test: 2" in out.stdout, out.stdout
    rows = list(csv.DictReader(open(tmp_path / "m.csv", encoding="utf-8")))
    assert {r["image"] for r in rows if r["decision"] == "duplicate"} == set(truth)
    assert any(r["image"] == f"sub/{EVIL}" for r in rows), "a hostile name is kept as plain text"
