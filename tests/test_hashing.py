"""Our batch hashes equal imagehash's bit for bit, on random, real and odd-shaped images."""

from __future__ import annotations

import numpy as np
import pytest

from core.features.hashing import METHODS, HashConfig, hash_images, reference_hash, resize_gray, to_hex
from tests.conftest import CIFAR, needs_cifar

CONFIGS = [HashConfig(m, s) for m in METHODS for s in (8, 16)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.label)
@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 20, 3), (20, 41, 3), (8, 8, 1)], ids=str)
def test_equals_imagehash_on_random_images(cfg: HashConfig, shape: tuple[int, int, int]) -> None:
    images = np.random.default_rng(7).integers(0, 256, (40, *shape), dtype=np.uint8)
    assert to_hex(hash_images(images, cfg)) == [reference_hash(x, cfg) for x in images]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.label)
def test_equals_imagehash_on_digits(digits, cfg: HashConfig) -> None:  # type: ignore[no-untyped-def]
    images = np.asarray(digits.images[:300])
    assert to_hex(hash_images(images, cfg)) == [reference_hash(x, cfg) for x in images]


@needs_cifar
@pytest.mark.cifar
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.label)
def test_equals_imagehash_on_cifar_jpegs(cfg: HashConfig) -> None:
    from PIL import Image

    files = sorted((CIFAR / "test" / "cat").glob("*.jpg"))[:150]
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    assert to_hex(hash_images(images, cfg)) == [reference_hash(x, cfg) for x in images]


def test_resize_matches_pillow_for_both_pass_orders() -> None:
    from PIL import Image

    gray = np.random.default_rng(1).integers(0, 256, (5, 40, 17), dtype=np.uint8)
    for h, w in [(16, 16), (8, 9), (32, 32), (64, 8)]:
        ref = np.stack([np.asarray(Image.fromarray(g).resize((w, h), Image.Resampling.LANCZOS)) for g in gray])
        assert np.array_equal(resize_gray(gray, h, w), ref), (h, w)


def test_hash_invariants() -> None:
    """Metamorphic checks in imagehash's style: a copy is at 0, a transpose is far."""
    from core.features.neighbors import find_pairs

    img = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    smooth = np.repeat(np.repeat(img[:, ::8, ::8], 8, axis=1), 8, axis=2)
    batch = np.concatenate([smooth, smooth.copy(), smooth.transpose(0, 2, 1, 3)])
    codes = hash_images(batch, HashConfig("phash", 8))
    pairs = find_pairs(codes, 64)
    d = {(int(i), int(j)): int(x) for i, j, x in zip(pairs.i, pairs.j, pairs.d)}
    assert d[(0, 1)] == 0
    assert d[(0, 2)] > 10


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        HashConfig("md5", 8)
    with pytest.raises(ValueError, match="hash size"):
        HashConfig("phash", 12)


def test_matrix_route_is_used_and_exact_for_common_shapes() -> None:
    """The fast route (Pillow's coefficients as matrices) must be the one taken for the usual
    shapes, and equal Pillow on many images, not only the probe."""
    from PIL import Image

    from core.features.hashing import _route

    rng = np.random.default_rng(5)
    for h, w, oh, ow in [(32, 32, 8, 8), (32, 32, 8, 9), (32, 32, 16, 16), (8, 8, 8, 9), (28, 20, 16, 16)]:
        assert _route(h, w, oh, ow)[1], "the matrix route should reproduce Pillow here"
        gray = rng.integers(0, 256, (300, h, w), dtype=np.uint8)
        ref = np.stack([np.asarray(Image.fromarray(g).resize((ow, oh), Image.Resampling.LANCZOS)) for g in gray])
        assert np.array_equal(resize_gray(gray, oh, ow), ref), (h, w, oh, ow)
