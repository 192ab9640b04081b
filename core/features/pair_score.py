"""The pair score: how surely two images are the same photo, tolerant of the edits people still call "the same".

For a pair (a, b) both images are first smoothed a little (Gaussian, sigma `smooth_sigma`: JPEG noise
and resampling, which differ between two copies of one photo, then weigh less). The score is the mean
of two normalised correlations, each the best over translations of b by up to `max_shift` pixels (on
the overlap, all channels together) and over b's mirror image: one of the images themselves, one of
their detail (the image minus its Gaussian blur, sigma `detail_sigma`: edges and texture without the
smooth background). `zooms` also compares a centre crop of either image, scaled back up (a re-crop
or a stretch). A shifted, flipped, re-encoded, re-cropped, stretched or recoloured copy keeps a
score near 1; a different photo with a similar layout (a plain sky, a ship on the sea) drops,
because its details do not line up.

Why this calibration: on 1,298 pairs of the CIFAR-10 leakage list judged by eye
(docs/cifar10-leakage-judged.csv), the area under the ROC curve of duplicate against not is 0.57
for the image correlation alone, 0.69 with the detail term, 0.88 with the eight zooms below and 0.90
with the smoothing (docs/NEAR_DUPLICATES.md). On planted copies (tests/test_candidates.py) the
detail term alone fails re-crops, which the image term and the zooms keep high.

How it is computed: every shift at once, through the spectra. Each image is prepared once however many
pairs it is in (`_Bank`: smoothing, and a zoom when asked, as one matrix per axis; the detail; the spectra
and the overlap sums of both terms), then the pairs are scored in batches: the mirror image's spectrum is
derived from the image's own (conjugate symmetry of a real signal, plus a phase ramp); on a CPU one compiled
pass per pair gathers and multiplies its cross-power spectrum and takes the inverse DFT at the 49 lags only,
one axis at a time (core.features.pair_kernels); elsewhere torch's operations and one matrix product to the lags; the
overlap's sums come from per-image sums over row and column masks. The memory of banks that are done with
serves the next ones (`_Spare`). It runs in torch, on the GPU when there is one (core.data.device), in float32
with the sums in float64, and equals `np.corrcoef` overlap by overlap to 1e-5 (tests/test_pair_score.py).
On CIFAR-10, with a compiled pixel cue and top-k in the search, the within-class list is 3.6x
faster than when each image was prepared again for every batch of 256 pairs, with the same scores to 1e-6
(`make bench`: before and after in the same run, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from core.data.device import pick_device
from core.data.types import Images, ProgressFn, report
from core.features.pair_kernels import LANES, Lags, centre_and_sum, cross_power, lag_sums, lag_tables, normalised_best

Zoom = tuple[float, float]  # (vertical, horizontal) factors: the centre 1/z of the image, scaled back up


def _valid(z: Zoom) -> bool:
    return len(z) == 2 and min(z) >= 1 and max(z) > 1


@dataclass(frozen=True)
class PairScoreConfig:
    """The pair score's search: shifts in pixels, the smoothing and the detail's blur for 32-pixel images
    (other sizes in proportion, see `scaled`), the mirror image, and the zooms of the re-crop check."""

    max_shift: int = 3
    flip: bool = True
    detail_sigma: float = 2.0
    smooth_sigma: float = 0.75  # 0: none
    # (vertical, horizontal) zoom factors: four plain re-crops and four stretches (CIFAR-10's duplicates include
    # both; on 1,298 judged leakage pairs the ROC AUC is 0.69 unzoomed, 0.84 with six plain zooms, 0.88 with these)
    zooms: tuple[Zoom, ...] = ((1.07, 1.07), (1.15, 1.15), (1.25, 1.25), (1.4, 1.4),
                               (1.0, 1.1), (1.1, 1.0), (1.0, 1.2), (1.2, 1.0))

    def __post_init__(self) -> None:
        if (self.max_shift < 0 or self.detail_sigma <= 0 or self.smooth_sigma < 0
                or not all(_valid(z) for z in self.zooms)):
            raise ValueError("max_shift and smooth_sigma must be at least 0, detail_sigma positive, and every zoom a "
                             "pair of factors (vertical, horizontal), each at least 1 and one above 1")

    def scaled(self, side: int) -> tuple[int, float, float]:
        """max_shift, detail_sigma and smooth_sigma for images of this side (a 3-pixel shift on an 8-pixel
        digit would compare halves of different images)."""
        shift = max(1, round(self.max_shift * side / 32)) if self.max_shift else 0
        return shift, self.detail_sigma * side / 32, self.smooth_sigma * side / 32


@lru_cache(maxsize=32)
def _blur_matrix(n: int, sigma: float) -> NDArray[np.float64]:
    """(n, n): scipy.ndimage.gaussian_filter1d along one axis (mode 'reflect', truncate 4) as a matrix."""
    radius = int(4.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    j = (np.arange(n)[:, None] + t[None, :]) % (2 * n)  # half-sample symmetric: d c b a | a b c d | d c b a
    j = np.where(j >= n, 2 * n - j - 1, j)
    m = np.zeros((n, n))
    np.add.at(m, (np.repeat(np.arange(n), len(t)), j.ravel()), np.tile(k, n))
    return m


@lru_cache(maxsize=64)
def _zoom_matrix(n: int, z: float) -> NDArray[np.float64]:
    """(n, n): the centre max(2, round(n / z)) of n samples, scaled back to n by linear interpolation as
    torch.nn.functional.interpolate does it (bilinear, align_corners=False), as a matrix."""
    crop = max(2, round(n / z))
    start = (n - crop) // 2
    src = np.maximum((np.arange(n) + 0.5) * crop / n - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, crop - 1)
    frac = src - i0
    m = np.zeros((n, n))
    np.add.at(m, (np.arange(n), start + i0), 1 - frac)
    np.add.at(m, (np.arange(n), start + i1), frac)
    return m


def _both_axes(my: torch.Tensor, x: torch.Tensor, mx_t: torch.Tensor) -> torch.Tensor:
    """my @ x @ mx_t for x (P, C, h, w): every row of every image at once by one matrix product, then the columns by a
    batched one (twice as fast on a CPU as torch's broadcast matmul on both sides, which copies the small matrix for
    every image)."""
    p, c, h, w = x.shape
    rows = (x.reshape(-1, w) @ mx_t).reshape(p * c, h, mx_t.shape[1])
    return torch.bmm(my.expand(p * c, *my.shape), rows).reshape(p, c, my.shape[0], mx_t.shape[1])


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter over the last two axes of (P, C, h, w): a matrix product per axis."""
    h, w = x.shape[-2:]
    my = torch.as_tensor(_blur_matrix(h, sigma), dtype=x.dtype, device=x.device)
    mx = torch.as_tensor(_blur_matrix(w, sigma), dtype=x.dtype, device=x.device)
    return _both_axes(my, x.contiguous(), mx.T.contiguous())


@dataclass(frozen=True)
class _Term:
    """One term of the score (the image, or its detail) prepared for a set of images: the spectrum of each
    mean-centred image, zero-padded to (H, W) = (h + s, w + s), and its sum and the sum of its square over every
    overlap as the first image of a pair (for shift (dy, dx): rows [max(dy, 0), h + min(dy, 0)), columns likewise).
    As the second image of a pair, its conjugate spectrum, its mirror image's and their sums are derived when
    gathered (`_best`), so an image is stored once."""

    spec: torch.Tensor  # (U, 2, C, H, W // 2 + 1) float32: real parts, then imaginary parts
    one: torch.Tensor  # (U, 2s+1, 2s+1) float64
    two: torch.Tensor  # (U, 2s+1, 2s+1) float64

    @staticmethod
    def empty(n: int, c: int, h: int, w: int, s: int, device: str | torch.device) -> _Term:
        """Room for n images of (c, h, w) and shifts up to s, filled by `_prepare`."""
        lags = 2 * s + 1
        return _Term(torch.empty((n, 2, c, h + s, (w + s) // 2 + 1), dtype=torch.float32, device=device),
                     torch.empty((n, lags, lags), dtype=torch.float64, device=device),
                     torch.empty((n, lags, lags), dtype=torch.float64, device=device))


def _channels_first(images: NDArray[Any], device: str) -> torch.Tensor:
    """(N, h, w, C) -> (N, C, h, w) float32, contiguous (reductions over a permuted view are several times slower)."""
    x = torch.as_tensor(np.asarray(images), device=device).permute(0, 3, 1, 2)
    return x.to(torch.float32, memory_format=torch.contiguous_format)


def _masks(n: int, s: int, device: torch.device) -> torch.Tensor:
    """(2s+1, n) float64: row d is 1 on [max(d, 0), n + min(d, 0)) for d in [-s, s]."""
    d = torch.arange(-s, s + 1, device=device)[:, None]
    i = torch.arange(n, device=device)[None, :]
    return ((i >= d.clamp(min=0)) & (i < n + d.clamp(max=0))).to(torch.float64)


def _prepare(x: torch.Tensor, s: int, into: _Term, lo: int = 0) -> _Term:
    """Rows lo.. of `into` for x: (U, C, h, w) float32, mean-centred here per image (in place on a CPU)."""
    n, c, h, w = x.shape
    if FUSED and x.device.type == "cpu":
        x = x.contiguous()
        centre_and_sum(x.numpy(), s, into.one[lo : lo + n].numpy(), into.two[lo : lo + n].numpy())
        into.spec[lo : lo + n] = torch.view_as_real(torch.fft.rfft2(x, s=(h + s, w + s))).permute(0, 4, 1, 2, 3)
        return into
    x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    my, mx = _masks(h, s, x.device), _masks(w, s, x.device)
    into.one[lo : lo + n] = my @ x.sum(1).to(torch.float64) @ mx.T  # three float32 terms each: exact enough
    into.two[lo : lo + n] = my @ (x * x).sum(1).to(torch.float64) @ mx.T
    into.spec[lo : lo + n] = torch.view_as_real(torch.fft.rfft2(x, s=(h + s, w + s))).permute(0, 4, 1, 2, 3)
    return into


FUSED = True  # on a CPU, the cross-power spectra and the normalised correlations by compiled kernels; elsewhere torch


def _cross(ta: _Term, tb: _Term, ia: torch.Tensor, ib: torch.Tensor, lags: Lags, flip: bool) -> torch.Tensor:
    """(P, O, 2 * H * W2) float32: each pair's cross-power spectrum, per orientation of b (as it is; mirrored,
    without its ramp), real parts then imaginary parts."""
    p, orientations = len(ia), 2 if flip else 1
    if FUSED and ta.spec.device.type == "cpu":
        out = np.empty((p, orientations, *ta.spec.shape[1:2], *ta.spec.shape[3:]), np.float32)
        cross_power(ta.spec.numpy(), tb.spec.numpy(), ia.numpy(), ib.numpy(), lags.rows.numpy(), out)
        return torch.from_numpy(out).reshape(p, orientations, -1)
    a, b = ta.spec.index_select(0, ia), tb.spec.index_select(0, ib)  # (P, 2, C, H, W2)
    ar, ai, br, bi = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    cross = [torch.stack([(ar * br + ai * bi).sum(1), (ai * br - ar * bi).sum(1)], 1)]
    if flip:
        mr, mi = br.index_select(2, lags.rows), bi.index_select(2, lags.rows)
        cross.append(torch.stack([(ar * mr - ai * mi).sum(1), (ar * mi + ai * mr).sum(1)], 1))
    return torch.stack(cross, 1).reshape(p, orientations, -1)


def _best(ta: _Term, tb: _Term, ia: torch.Tensor, ib: torch.Tensor, lags: Lags, flip: bool) -> torch.Tensor:
    """For pairs (ia[k], ib[k]): the best correlation over shifts and, with flip, b's mirror image."""
    p, size = len(ia), lags.n.shape[0]
    if FUSED and ta.spec.device.type == "cpu" and ta.spec.shape[-1] <= LANES:
        sums = np.empty((p, 2 if flip else 1, size, size), np.float32)
        lag_sums(ta.spec.numpy(), tb.spec.numpy(), ia.numpy(), ib.numpy(), lags.rows.numpy(), lags.by_row,
                  lags.by_column, sums)
        sab = torch.from_numpy(sums)
    else:
        cross = _cross(ta, tb, ia, ib, lags, flip)
        kernels = [lags.kernel, lags.mirror][: cross.shape[1]]
        sab = torch.stack([cross[:, o] @ k for o, k in enumerate(kernels)], 1).reshape(p, -1, size, size)
    if FUSED and sab.device.type == "cpu":
        out = np.empty(p, np.float64)
        normalised_best(sab.numpy(), ta.one.numpy(), ta.two.numpy(), tb.one.numpy(), tb.two.numpy(), ia.numpy(),
                         ib.numpy(), lags.n.numpy(), out)
        return torch.from_numpy(out)
    sab = sab.double()
    sa, saa = ta.one.index_select(0, ia)[:, None], ta.two.index_select(0, ia)[:, None]
    # as the second image, its overlap at (dy, dx) is its own region at (-dy, -dx); mirrored, at (-dy, dx)
    one, two = tb.one.index_select(0, ib), tb.two.index_select(0, ib)
    sb = torch.stack([one.flip((1, 2))] + ([one.flip(1)] if flip else []), 1)
    sbb = torch.stack([two.flip((1, 2))] + ([two.flip(1)] if flip else []), 1)
    n = lags.n
    cov = sab - sa * sb / n
    den = torch.sqrt((saa - sa * sa / n).clamp(min=0) * (sbb - sb * sb / n).clamp(min=0))
    return (cov / den.clamp(min=1e-6)).amax(dim=(1, 2, 3))


BATCH = 2_048  # images prepared at once, and pairs whose products are taken at once
SPARE_TERMS = 4  # the memory of two banks kept for the next ones (`_Spare`)
KEEP_SECONDS = 120.0  # ... and let go this long after the last bank was done with


class _Spare:
    """The memory of banks that are done with, kept for the next banks of this process (any call, any thread) instead
    of being freed and allocated again: here a new bank of 50,000 CIFAR-10 images (1.5 GB) spends 3.6-7 s of CPU in
    the kernel on page faults, a refilled one 0.2-0.6 s, and a scope's candidates prepare up to four banks. At most
    SPARE_TERMS terms; all of it let go KEEP_SECONDS after the last release (or by `clear`)."""

    def __init__(self) -> None:
        self.terms: list[_Term] = []
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def take(self, n: int, c: int, h: int, w: int, s: int, device: str | torch.device) -> _Term:
        """A kept term with room for n images of (c, h, w) and shifts up to s (no longer kept), else a new one."""
        want = _Term.empty(1, c, h, w, s, "meta")  # shapes only
        with self.lock:
            for k, t in enumerate(self.terms):
                if (t.spec.shape[1:] == want.spec.shape[1:] and t.one.shape[1:] == want.one.shape[1:]
                        and len(t.spec) >= n and t.spec.device == torch.device(device)):
                    return self.terms.pop(k)
        return _Term.empty(n, c, h, w, s, device)

    def give(self, terms: list[_Term]) -> None:
        with self.lock:
            self.terms.extend(terms)
            del self.terms[: max(0, len(self.terms) - SPARE_TERMS)]
            if self.timer is not None:
                self.timer.cancel()
            self.timer = threading.Timer(KEEP_SECONDS, self.clear)
            self.timer.daemon = True
            self.timer.start()

    def clear(self) -> None:
        with self.lock:
            self.terms.clear()


SPARE = _Spare()


class _Bank:
    """Both terms (image and detail) of a set of images, each image prepared once, in batches; then the pair scores
    of any pairs among them, or between them and another bank (the same images zoomed)."""

    def __init__(self, images: Images | NDArray[Any], idx: NDArray[np.int64], cfg: PairScoreConfig,
                 zoom: Zoom | None = None) -> None:
        """The memory of banks that are done with (`SPARE`) is taken over where it is large enough."""
        self.cfg, self.device = cfg, pick_device()
        h, w, c = (int(v) for v in images.shape[1:4])
        self.shift, sigma, smooth = cfg.scaled(min(h, w))
        self.lags = lag_tables(c, h, w, self.shift, str(self.device))
        # the zoom (a crop scaled back up) and the smoothing, both linear along each axis: one matrix per axis
        my, mx = np.eye(h), np.eye(w)
        if zoom is not None:
            my, mx = _zoom_matrix(h, zoom[0]), _zoom_matrix(w, zoom[1])
        if smooth > 0:
            my, mx = _blur_matrix(h, smooth) @ my, _blur_matrix(w, smooth) @ mx
        ty = torch.as_tensor(my, dtype=torch.float32, device=self.device)
        tx = torch.as_tensor(mx.T, dtype=torch.float32, device=self.device)
        n = len(idx)
        self.memory = [SPARE.take(n, c, h, w, self.shift, self.device) for _ in range(2)]  # at least n images each
        self.image, self.detail = (_Term(t.spec[:n], t.one[:n], t.two[:n]) for t in self.memory)
        for lo in range(0, len(idx), BATCH):
            x = _both_axes(ty, _channels_first(np.asarray(images[idx[lo : lo + BATCH]]), self.device), tx)
            _prepare(x, self.shift, self.image, lo)
            # the blur keeps a constant (its rows sum to 1), so the detail is the same whether x is centred yet or not
            _prepare(x - _gaussian_blur(x, sigma), self.shift, self.detail, lo)

    def release(self) -> None:
        """Hand this bank's memory to the next banks (`SPARE`); the bank is not to be used again."""
        SPARE.give(self.memory)
        self.memory = []

    def scores(self, ia: NDArray[np.int64], ib: NDArray[np.int64], other: _Bank | None = None, chunk: int = BATCH,
               tick: Callable[[int], None] | None = None) -> NDArray[np.float32]:
        """The pair score of (self[ia[k]], other[ib[k]]) (other defaults to self), `chunk` pairs at a time; tick(n)
        after each chunk of n pairs."""
        o = self if other is None else other
        out = np.empty(len(ia), np.float32)
        for lo in range(0, len(ia), chunk):
            ta = torch.as_tensor(ia[lo : lo + chunk], device=self.device)
            tb = torch.as_tensor(ib[lo : lo + chunk], device=self.device)
            image = _best(self.image, o.image, ta, tb, self.lags, self.cfg.flip)
            fine = _best(self.detail, o.detail, ta, tb, self.lags, self.cfg.flip)
            out[lo : lo + chunk] = ((image + fine) / 2).to(torch.float32).cpu().numpy()
            if tick is not None:
                tick(len(ta))
        return out


def _zoom(x: torch.Tensor, z: Zoom) -> torch.Tensor:
    """(N, C, h, w): the centre (h / z[0], w / z[1]) of each image, scaled back to (h, w) bilinearly (pixel
    centres aligned)."""
    h, w = x.shape[-2:]
    ch, cw = max(2, round(h / z[0])), max(2, round(w / z[1]))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = x[:, :, y0 : y0 + ch, x0 : x0 + cw]
    return torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def zoomed(images: NDArray[Any], z: Zoom) -> NDArray[np.float32]:
    """The centre of each (N, h, w, C) image, 1/z[0] of its height and 1/z[1] of its width, scaled back to full
    size (bilinear): a re-crop, or a stretch when the factors differ (float32)."""
    with torch.inference_mode():
        return _zoom(_channels_first(images, "cpu"), z).permute(0, 2, 3, 1).contiguous().numpy()


def score_pairs(images: Images | NDArray[Any], a: NDArray[np.int64], b: NDArray[np.int64],
                cfg: PairScoreConfig = PairScoreConfig(), zooms: tuple[Zoom, ...] = (), *, chunk: int = BATCH,
                on_progress: ProgressFn | None = None, phase: str = "pair score",
                threads: int | None = None) -> NDArray[np.float32]:
    """The pair score of (images[a[k]], images[b[k]]) for every k, best also over `zooms` of either image.

    Each distinct image is prepared once (both terms, and once more per zoom), however many pairs it is in; then
    the pairs are scored `chunk` at a time. On a CPU the pairs' products run on `threads` threads (default: one
    per core)."""
    import numba

    before = numba.get_num_threads()
    if threads is not None:  # the compiled kernel's threads (numba's own count, per calling thread)
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        with torch.inference_mode():
            return _score_pairs(images, a, b, cfg, zooms, chunk, on_progress, phase)
    finally:
        numba.set_num_threads(before)


BANK_BYTES = 2 * 2**30  # a bank's spectra and sums at most (65,000 CIFAR-sized images; twice that with a zoom's)


def bank_images(shape: tuple[int, ...], cfg: PairScoreConfig) -> int:
    """How many images of (h, w, C) one bank holds within BANK_BYTES: both terms' spectra and overlap sums."""
    h, w, c = (int(v) for v in shape[:3])
    one = _Term.empty(1, c, h, w, cfg.scaled(min(h, w))[0], "meta")  # shapes only, nothing allocated
    per_image = 2 * sum(t.numel() * t.element_size() for t in (one.spec, one.one, one.two))
    return max(2, BANK_BYTES // per_image)


def _windows(a: NDArray[np.int64], b: NDArray[np.int64], room: int) -> list[NDArray[np.int64]]:
    """Positions of the pairs, in groups whose distinct images fit a bank of `room` images: all at once when they
    fit (each image then prepared once), else runs of room // 2 pairs in query order."""
    order = np.argsort(a, kind="stable")
    if len(np.unique(np.concatenate([a, b]))) <= room:
        return [order]
    step = max(1, room // 2)
    return [order[lo : lo + step] for lo in range(0, len(a), step)]


def _score_pairs(images: Images | NDArray[Any], a: NDArray[np.int64], b: NDArray[np.int64], cfg: PairScoreConfig,
                 zooms: tuple[Zoom, ...], chunk: int, on_progress: ProgressFn | None,
                 phase: str) -> NDArray[np.float32]:
    out = np.empty(len(a), np.float32)
    total, done = len(a) * (1 + 2 * len(zooms)), [0]

    def tick(k: int) -> None:
        done[0] += k
        report(on_progress, phase, done[0], total)  # a cancelled job stops here

    for rows in _windows(a, b, bank_images(tuple(images.shape[1:]), cfg)):
        u, inv = np.unique(np.concatenate([a[rows], b[rows]]), return_inverse=True)
        ia, ib = inv[: len(rows)], inv[len(rows) :]
        bank = _Bank(images, u, cfg)
        best = bank.scores(ia, ib, chunk=chunk, tick=tick)
        for z in zooms:
            zoomed_bank = _Bank(images, u, cfg, z)  # the previous zoom's memory, refilled
            best = np.maximum(best, np.maximum(bank.scores(ia, ib, zoomed_bank, chunk, tick),
                                               zoomed_bank.scores(ia, ib, bank, chunk, tick)))
            zoomed_bank.release()
        bank.release()
        out[rows] = best
    return out


def similarity(a: NDArray[Any], b: NDArray[Any], cfg: PairScoreConfig = PairScoreConfig(),
               zooms: tuple[Zoom, ...] = ()) -> NDArray[np.float32]:
    """The pair score of (a[k], b[k]) for two aligned arrays of images, best also over `zooms`."""
    if len(a) != len(b):
        raise ValueError(f"a and b must hold as many images: {len(a)} and {len(b)}")
    both = np.concatenate([np.asarray(a), np.asarray(b)])
    k = np.arange(len(a), dtype=np.int64)
    return score_pairs(both, k, k + len(a), cfg, zooms)


def pair_scores(a: NDArray[Any], b: NDArray[Any], max_shift: int = 3, flip: bool = True) -> NDArray[np.float32]:
    """The plain normalised correlation of (a[k], b[k]): best over translations of b by up to max_shift
    pixels (on the overlap) and, with flip, over its mirror image; no detail term, no scaling."""
    if len(a) != len(b):
        raise ValueError(f"a and b must hold as many images: {len(a)} and {len(b)}")
    with torch.inference_mode():
        x = _channels_first(np.concatenate([np.asarray(a), np.asarray(b)]), "cpu")
        term = _prepare(x - x.mean(dim=(1, 2, 3), keepdim=True), max_shift,
                        _Term.empty(len(x), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]), max_shift, "cpu"))
        k = torch.arange(len(a))
        lags = lag_tables(int(x.shape[1]), int(x.shape[2]), int(x.shape[3]), max_shift, "cpu")
        return _best(term, term, k, k + len(a), lags, flip).to(torch.float32).numpy()


def detail(images: NDArray[Any], sigma: float) -> NDArray[np.float32]:
    """Each image minus its Gaussian blur: edges and texture, without the smooth background (float32)."""
    x = torch.as_tensor(np.array(images, np.float32)).permute(0, 3, 1, 2)
    return (x - _gaussian_blur(x, sigma)).permute(0, 2, 3, 1).contiguous().numpy()



@dataclass(frozen=True)
class Alignment:
    dy: int
    dx: int
    flipped: bool
    score: float


def align(a: NDArray[np.uint8], b: NDArray[np.uint8], max_shift: int = 3, flip: bool = True) -> Alignment:
    """The shift (and mirror) of b that the pair score chose: b[y, x] best matches a[y + dy, x + dx]."""
    best = Alignment(0, 0, False, -2.0)
    fa = np.asarray(a, np.float64)[None] if a.ndim == 3 else np.asarray(a, np.float64)[None, :, :, None]
    fb = np.asarray(b, np.float64)[None] if b.ndim == 3 else np.asarray(b, np.float64)[None, :, :, None]
    for flipped in (False, True) if flip else (False,):
        g = fb[:, :, ::-1] if flipped else fb
        h, w = fa.shape[1:3]
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                ca = fa[:, max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)].ravel()
                cb = g[:, max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)].ravel()
                ca, cb = ca - ca.mean(), cb - cb.mean()
                r = float(ca @ cb / max(np.sqrt((ca @ ca) * (cb @ cb)), 1e-6))
                if r > best.score:
                    best = Alignment(dy, dx, flipped, r)
    return best


def difference_image(a: NDArray[np.uint8], b: NDArray[np.uint8], al: Alignment, gain: float = 3.0) -> NDArray[np.uint8]:
    """|a - b| after b is aligned (shift, mirror) and matched to a's mean and contrast on the overlap,
    amplified `gain` times; outside the overlap mid-grey. Black means identical."""
    fa = np.asarray(a, np.float64)
    fb = np.asarray(b, np.float64)[:, ::-1] if al.flipped else np.asarray(b, np.float64)
    h, w = fa.shape[:2]
    ya, xa, yb, xb = max(0, al.dy), max(0, al.dx), max(0, -al.dy), max(0, -al.dx)
    hh, ww = h - abs(al.dy), w - abs(al.dx)
    ca, cb = fa[ya : ya + hh, xa : xa + ww], fb[yb : yb + hh, xb : xb + ww]
    cb = (cb - cb.mean()) / max(cb.std(), 1e-6) * ca.std() + ca.mean()
    out = np.full(fa.shape, 128.0)
    out[ya : ya + hh, xa : xa + ww] = np.clip(np.abs(ca - cb) * gain, 0, 255)
    return out.astype(np.uint8)
