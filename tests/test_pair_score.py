"""The pair score: one for a shifted, flipped copy, and equal to a direct np.corrcoef over every overlap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from core.data.synthetic import base_image
from core.features.pair_score import PairScoreConfig, detail, pair_scores, score_pairs, similarity


def test_the_pair_score_is_one_for_a_shifted_flipped_copy_and_matches_a_direct_correlation() -> None:
    rng = np.random.default_rng(2)
    a = np.stack([np.asarray(base_image(rng, 32)) for _ in range(3)])
    b = a[:, :, ::-1]  # mirrored
    assert np.all(pair_scores(a, b, 0, flip=True) > 0.999) and np.all(pair_scores(a, b, 0, flip=False) < 0.999)
    x, y = a[0].astype(np.float64).ravel(), a[1].astype(np.float64).ravel()
    direct = np.corrcoef(x, y)[0, 1]
    assert pair_scores(a[:1], a[1:2], 0, flip=False)[0] == pytest.approx(direct, abs=1e-5)


def _direct_pair_scores(a: np.ndarray, b: np.ndarray, max_shift: int, flip: bool) -> np.ndarray:
    """The definition, overlap by overlap: np.corrcoef of the two crops for every shift (and mirror)."""
    out = []
    for x, y in zip(a.astype(np.float64), b.astype(np.float64)):
        h, w = x.shape[:2]
        best = -1.0
        for yy in ([y, y[:, ::-1]] if flip else [y]):
            for dy in range(-max_shift, max_shift + 1):
                for dx in range(-max_shift, max_shift + 1):
                    ca = x[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
                    cb = yy[max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)]
                    best = max(best, np.corrcoef(ca.ravel(), cb.ravel())[0, 1])
        out.append(best)
    return np.array(out)


@pytest.mark.parametrize("shape,max_shift,flip",
                         [((32, 32, 3), 3, True), ((20, 24, 1), 2, False), ((9, 9, 3), 4, True)])
def test_the_fft_pair_score_equals_the_direct_correlation_over_every_overlap(shape, max_shift, flip) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (6, *shape), dtype=np.uint8)
    b = np.roll(a, (1, -2), axis=(1, 2))
    b[3:] = rng.integers(0, 256, (3, *shape), dtype=np.uint8)  # unrelated
    got = pair_scores(a, b, max_shift, flip)
    np.testing.assert_allclose(got, _direct_pair_scores(a, b, max_shift, flip), atol=1e-5)


def test_the_pair_score_leaves_its_inputs_as_they_were() -> None:
    rng = np.random.default_rng(4)
    a = rng.random((3, 16, 16, 3)) * 255
    b = rng.random((3, 16, 16, 3)) * 255
    a0, b0 = a.copy(), b.copy()
    pair_scores(a, b)
    similarity(a, b, PairScoreConfig(), ((1.1, 1.1),))
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)




@pytest.mark.parametrize("shape,sigma", [((32, 32, 3), 2.0), ((8, 8, 1), 0.5), ((9, 7, 3), 3.0)],
                         ids=["cifar-sized", "digit-sized", "blur wider than the image"])
def test_the_detail_is_the_image_minus_scipys_gaussian_blur(shape, sigma) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (4, *shape)).astype(np.float32)
    np.testing.assert_allclose(detail(x, sigma), x - gaussian_filter(x, (0, sigma, sigma, 0)), atol=1e-3)


def test_pairs_by_index_score_as_the_definition_whatever_the_chunk() -> None:
    """score_pairs prepares each image once per chunk; queries that repeat (as in a candidate list) and
    chunks that split a query's pairs give the definition's number: the mean of the direct image and
    detail correlations, best over shifts and the mirror, and over both images zoomed."""
    from core.features.pair_score import zoomed

    rng = np.random.default_rng(6)
    images = np.stack([np.asarray(base_image(rng, 32)) for _ in range(12)])
    images[6:] = np.roll(images[:6], (2, -1), axis=(1, 2))  # shifted copies beside unrelated images
    a = np.array([0, 0, 0, 1, 1, 2, 3, 4, 5, 5, 0, 7], np.int64)
    b = np.array([6, 7, 8, 7, 2, 8, 9, 10, 11, 3, 11, 1], np.int64)
    cfg = PairScoreConfig()
    shift, sigma, smooth = cfg.scaled(32)

    def definition(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = gaussian_filter(x.astype(np.float64), (0, smooth, smooth, 0)), gaussian_filter(
            y.astype(np.float64), (0, smooth, smooth, 0))
        return (_direct_pair_scores(x, y, shift, True)
                + _direct_pair_scores(detail(x, sigma), detail(y, sigma), shift, True)) / 2

    want = definition(images[a], images[b])
    for chunk in (3, 5, 100):
        np.testing.assert_allclose(score_pairs(images, a, b, cfg, chunk=chunk), want, atol=1e-5)
    np.testing.assert_allclose(similarity(images[a], images[b], cfg), want, atol=1e-5)
    z = (1.2, 1.1)
    zoomed_want = np.maximum.reduce([want, definition(images[a], zoomed(images[b], z)),
                                     definition(zoomed(images[a], z), images[b])])
    np.testing.assert_allclose(score_pairs(images, a, b, cfg, (z,), chunk=4), zoomed_want, atol=1e-5)
    copy = (b - a) % 6 == 0  # a shifted copy of the query
    assert np.all(want[copy] > 0.95) and np.all(want[~copy] < 0.9), want


def test_zooms_catch_a_re_crop_and_a_stretch_and_bad_zooms_are_refused() -> None:
    """A photo cropped by 3 pixels on every side, or squeezed to 90% of its width, and scaled back to 32 x 32
    scores lower unzoomed than with the zooms, which bring both back near the plain copy's level."""
    from PIL import Image

    rng = np.random.default_rng(7)
    photos = [base_image(rng, 32) for _ in range(4)]
    a = np.stack([np.asarray(p) for p in photos] * 2)
    crops = [np.asarray(p.crop((3, 3, 29, 29)).resize((32, 32), Image.Resampling.BILINEAR)) for p in photos]
    stretches = [np.asarray(p.crop((2, 0, 30, 32)).resize((32, 32), Image.Resampling.BILINEAR)) for p in photos]
    b = np.stack(crops + stretches)
    cfg = PairScoreConfig()
    plain, zoomed_score = similarity(a, b, cfg), similarity(a, b, cfg, cfg.zooms)
    assert np.all(zoomed_score > plain + 0.01) and np.all(zoomed_score > 0.9), (plain, zoomed_score)
    for bad in [((1.0, 1.0),), ((0.9, 1.2),), ((1.2,),)]:
        with pytest.raises(ValueError, match="zoom"):
            PairScoreConfig(zooms=bad)  # type: ignore[arg-type]


def test_the_compiled_kernel_torch_the_threads_and_the_windows_give_the_same_scores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cross-power spectra by the compiled CPU kernel or by torch's operations (the GPU's route), on one thread or
    all, with every image in one bank or the pairs cut into windows of a few images: the same scores; the progress
    reaches the end of every zoom's two passes."""
    from core.features import pair_score

    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    images[30:] = np.roll(images[:30], 1, axis=2)  # a shifted copy of each of the first 30
    a, b = rng.integers(0, 60, 400), rng.integers(0, 60, 400)
    cfg = PairScoreConfig()
    seen: list[int] = []
    fused = score_pairs(images, a, b, cfg, cfg.zooms[:2], on_progress=lambda p: seen.append(p.done))
    assert seen[-1] == 400 * (1 + 2 * 2) and seen == sorted(seen)
    np.testing.assert_allclose(score_pairs(images, a, b, cfg, cfg.zooms[:2], threads=1), fused, atol=1e-6)
    assert 40 * pair_score.bank_images((224, 224, 3), cfg) < pair_score.bank_images((32, 32, 3), cfg)  # bytes bound
    monkeypatch.setattr(pair_score, "BANK_BYTES", 16 * 2 * (2 * 3 * 18 * 10 * 4 + 2 * 5 * 5 * 8))  # 8-pair windows
    assert pair_score.bank_images(images.shape[1:], cfg) == 16
    np.testing.assert_allclose(score_pairs(images, a, b, cfg, cfg.zooms[:2]), fused, atol=1e-6)
    monkeypatch.setattr(pair_score, "FUSED", False)
    np.testing.assert_allclose(score_pairs(images, a, b, cfg, cfg.zooms[:2], chunk=7), fused, atol=1e-5)
    copies = np.arange(30)
    assert np.all(score_pairs(images, copies, copies + 30, cfg) > 0.95)


def test_later_banks_refill_the_memory_of_earlier_ones_with_the_same_scores_and_let_it_go_when_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Banks of fewer images than the memory left by an earlier call take it over (the same buffers come back), and
    nothing of the earlier images leaks into the scores; the memory is let go when no bank has wanted it for a while."""
    import time

    from core.features import pair_score

    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (80, 16, 16, 3), dtype=np.uint8)
    a, b = rng.integers(0, 80, 300), rng.integers(0, 80, 300)
    few = (a < 20) & (b < 20)
    cfg = PairScoreConfig()
    pair_score.SPARE.clear()
    alone = score_pairs(images, a[few], b[few], cfg, cfg.zooms[:2])
    pair_score.SPARE.clear()
    score_pairs(images, a, b, cfg, cfg.zooms[:2])
    buffers = {t.spec.data_ptr() for t in pair_score.SPARE.terms}
    assert len(buffers) == 4  # two banks (the plain one and the last zoom's), two terms each
    monkeypatch.setattr(pair_score, "KEEP_SECONDS", 0.2)
    np.testing.assert_array_equal(score_pairs(images, a[few], b[few], cfg, cfg.zooms[:2]), alone)
    assert {t.spec.data_ptr() for t in pair_score.SPARE.terms} == buffers
    time.sleep(1.0)
    assert pair_score.SPARE.terms == []
