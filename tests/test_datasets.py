"""Every source opens to the same shape of object; bad files are reported, never fatal, never touched."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from core.data.datasets import TEST, TRAIN, DatasetError, load_dataset, load_image_folder, load_torchvision
from tests import bad_corpus
from tests.conftest import tree_snapshot


def test_digits_is_the_default(digits) -> None:  # type: ignore[no-untyped-def]
    ds = load_dataset()
    assert ds.name == "digits" and len(ds) == 1797 and ds.image_shape == (8, 8, 1)
    assert ds.images.dtype == np.uint8 and ds.images.max() == 255
    assert (ds.split == TEST).sum() == 450
    assert ds.fingerprint == digits.fingerprint  # stable across loads
    per_class_test = np.bincount(ds.labels[ds.split == TEST])
    assert per_class_test.min() >= 43  # stratified


def test_bad_corpus_is_reported_and_left_untouched(tmp_path: Path) -> None:
    bad_corpus.build(tmp_path)
    before = tree_snapshot(tmp_path)
    ds = load_image_folder(tmp_path)
    assert tree_snapshot(tmp_path) == before  # byte for byte
    used = {str(i) for i in ds.ids}
    skipped = {s.path: s.reason for s in ds.skipped}
    for rel, (outcome, reason) in bad_corpus.CASES.items():
        if outcome == bad_corpus.USED:
            assert rel in used, f"{rel} should be used; skipped because {skipped.get(rel)}"
        else:
            assert rel in skipped, f"{rel} should be skipped with a reason"
            assert reason in skipped[rel], f"{rel}: {skipped[rel]!r} lacks {reason!r}"
    assert len(used) + len([r for r in skipped if r in bad_corpus.CASES]) == len(bad_corpus.CASES)
    assert ds.images.shape[1:] == (24, 24, 3)  # all resized to the first image's size
    big = int(np.flatnonzero(ds.ids == "train/cats/huge_and_tiny/big.png")[0])
    assert tuple(ds.sizes[big]) == (300, 400)  # the original size is kept for the keep policy
    rot = int(np.flatnonzero(ds.ids == "train/cats/exif_rotated.jpg")[0])
    assert tuple(ds.sizes[rot]) == (30, 20)  # EXIF orientation applied: 30x20 landscape shown as portrait
    assert set(ds.classes) >= {"cats", "only_one", "ünïcode-クラス", "<img src=x onerror=alert(1)>"}
    assert (ds.split == TEST).sum() == 1


def test_second_open_reads_the_cache(planted_folder) -> None:  # type: ignore[no-untyped-def]
    from core.data import cache

    root, _ = planted_folder
    first = load_image_folder(root)
    misses = cache.stats.misses
    again = load_image_folder(root)
    assert cache.stats.misses == misses
    assert again.fingerprint == first.fingerprint and np.array_equal(again.images, first.images)


def test_single_class_without_splits(tmp_path: Path) -> None:
    from PIL import Image

    for k in range(3):
        (tmp_path / "only").mkdir(exist_ok=True)
        Image.new("RGB", (10, 10), (k * 40, 0, 0)).save(tmp_path / "only" / f"{k}.png")
    ds = load_image_folder(tmp_path)
    assert ds.classes == ("only",) and len(ds) == 3 and (ds.split == TRAIN).all()


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing", "not found"),
    (lambda p: p, "no readable images"),
], ids=["missing-root", "no-images"])
def test_unusable_folders_have_clear_messages(tmp_path: Path, make, match) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=match):
        load_image_folder(make(tmp_path))


def test_unknown_source_and_missing_root() -> None:
    with pytest.raises(DatasetError, match="must be one of"):
        load_dataset("imagenet:/x")
    with pytest.raises(DatasetError, match="needs a root folder"):
        load_dataset("cifar10")


def test_missing_torchvision_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_torchvision("cifar10", tmp_path)


def _idx(path: Path, arr: np.ndarray) -> None:
    kind = {1: 0x0801, 3: 0x0803}[arr.ndim]
    header = struct.pack(">I", kind) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_mnist_layout_through_torchvision(tmp_path: Path) -> None:
    """torchvision's own MNIST reader on files in its layout (written here, since nothing downloads)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 8)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    for f in raw.iterdir():
        with gzip.open(str(f) + ".gz", "wb") as fh:
            fh.write(f.read_bytes())
    ds = load_dataset(f"mnist:{tmp_path}")
    assert len(ds) == 28 and ds.image_shape == (28, 28, 1) and (ds.split == TEST).sum() == 8
    assert ds.classes[0].startswith("0")
