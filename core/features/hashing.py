"""Perceptual hashes (aHash, dHash, pHash, wHash) for whole batches, bit for bit imagehash's.

imagehash converts each image to gray and resizes it with Pillow's LANCZOS filter, then
thresholds a small array. Calling it per image costs two Pillow calls and Python overhead for
every image. Here the gray conversion is one Pillow call on the batch stacked into a tall image
(a per-pixel operation), and the resize reproduces Pillow's integer arithmetic as two exact
float64 matrix products over the whole batch, in the pass order Pillow uses (checked against
Pillow on probe images once per shape pair, with Pillow's own passes on stacked images as the
fallback). The thresholds are vectorised numpy. Hash references: hackerfactor's "Looks
Like It" (aHash, pHash) and "Kind of Like That" (dHash); wHash from imagehash.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from core.data import cache
from core.data.datasets import Dataset
from core.data.types import Codes, Images, ProgressFn, report

METHODS = ("ahash", "dhash", "phash", "whash")
HASH_SIZES = (8, 16)
BATCH = 2048  # images per Pillow call; bounds memory and the tall image's height


@dataclass(frozen=True)
class HashConfig:
    """Which perceptual hash, at which hash size (bits = hash_size ** 2)."""

    method: str = "phash"
    hash_size: int = 8

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown hash method {self.method!r}: must be one of {', '.join(METHODS)}")
        if self.hash_size not in HASH_SIZES:
            raise ValueError(f"hash size must be one of {HASH_SIZES}, got {self.hash_size}")

    @property
    def bits(self) -> int:
        return self.hash_size * self.hash_size

    @property
    def label(self) -> str:
        return f"{self.method}{self.hash_size}"


def to_gray(images: Images) -> NDArray[np.uint8]:
    """(N, H, W, C) to (N, H, W) with Pillow's own RGB->L conversion (one call per batch)."""
    n, h, w, c = images.shape
    if c == 1:
        return np.ascontiguousarray(images[..., 0])
    tall = Image.fromarray(np.ascontiguousarray(images).reshape(n * h, w, c), "RGB")
    return np.asarray(tall.convert("L")).reshape(n, h, w)


PRECISION_BITS = 22  # Pillow's fixed-point precision for 8-bit resampling


def _lanczos(x: float) -> float:
    """Pillow's LANCZOS filter (truncated sinc, support 3), with the same float operations."""

    def sinc(v: float) -> float:
        if v == 0.0:
            return 1.0
        v = v * math.pi
        return math.sin(v) / v

    return sinc(x) * sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


@lru_cache(maxsize=256)
def _coefficients(in_size: int, out_size: int) -> NDArray[np.float64]:
    """Pillow's integer resampling coefficients as an (out, in) matrix (precompute_coeffs + 8-bit rounding)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    k = np.zeros((out_size, in_size), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - xmin
        w = [_lanczos((x + xmin - center + 0.5) / filterscale) for x in range(count)]
        total = 0.0
        for v in w:
            total += v
        for x, v in enumerate(w):
            v = v / total if total != 0.0 else v
            k[xx, xmin + x] = int(v * (1 << PRECISION_BITS) + (0.5 if v >= 0 else -0.5))
    return k


def _resample_last(a: NDArray[np.uint8], k: NDArray[np.float64]) -> NDArray[np.uint8]:
    """One pass along the last axis. The integer sums stay below 2**53, so float64 BLAS is exact."""
    acc = a.astype(np.float64) @ k.T
    out: NDArray[np.uint8] = np.clip(np.floor((acc + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)),
                                     0, 255).astype(np.uint8)
    return out


def _horizontal(gray: NDArray[np.uint8], width: int, exact_matmul: bool) -> NDArray[np.uint8]:
    n, h, w = gray.shape
    if width == w:
        return gray
    if exact_matmul:
        return _resample_last(gray, _coefficients(w, width))
    tall = Image.fromarray(np.ascontiguousarray(gray).reshape(n * h, w), "L")
    return np.asarray(tall.resize((width, n * h), Image.Resampling.LANCZOS)).reshape(n, h, width)


def _vertical(gray: NDArray[np.uint8], height: int, exact_matmul: bool) -> NDArray[np.uint8]:
    n, h, w = gray.shape
    if height == h:
        return gray
    if exact_matmul:
        columns = np.ascontiguousarray(gray.transpose(0, 2, 1))
        return _resample_last(columns, _coefficients(h, height)).transpose(0, 2, 1)
    wide = Image.fromarray(np.ascontiguousarray(gray.transpose(1, 0, 2)).reshape(h, n * w), "L")
    res = np.asarray(wide.resize((n * w, height), Image.Resampling.LANCZOS))
    return res.reshape(height, n, w).transpose(1, 0, 2)


def _two_pass(gray: NDArray[np.uint8], height: int, width: int, horizontal_first: bool,
              exact_matmul: bool) -> NDArray[np.uint8]:
    if horizontal_first:
        return _vertical(_horizontal(gray, width, exact_matmul), height, exact_matmul)
    return _horizontal(_vertical(gray, height, exact_matmul), width, exact_matmul)


@lru_cache(maxsize=256)
def _route(h: int, w: int, height: int, width: int) -> tuple[bool, bool]:
    """(horizontal first?, matrix route?) for this shape pair, read off random probe images.

    Pillow chooses the pass order itself, and its coefficients are reproduced here; both are
    checked against Pillow once per shape pair. Should the matrix route ever disagree (another
    Pillow version), the batch falls back to Pillow's own passes on stacked images.
    """
    probe = np.random.default_rng(h * 131 + w).integers(0, 256, (3, h, w), dtype=np.uint8)
    ref = np.stack([np.asarray(Image.fromarray(p, "L").resize((width, height), Image.Resampling.LANCZOS))
                    for p in probe])
    for exact_matmul in (True, False):
        for horizontal_first in (True, False):
            if np.array_equal(_two_pass(probe, height, width, horizontal_first, exact_matmul), ref):
                return horizontal_first, exact_matmul
    raise RuntimeError(f"cannot reproduce Pillow's LANCZOS resize from {h}x{w} to {height}x{width}")


def resize_gray(gray: NDArray[np.uint8], height: int, width: int) -> NDArray[np.uint8]:
    """Resize every (H, W) gray image to (height, width) exactly as Pillow's LANCZOS would.

    Pillow's 8-bit resampling is integer arithmetic (22-bit fixed-point coefficients), two
    separable passes in an order Pillow picks. The same coefficients as a matrix make each pass
    one exact float64 matrix product for the whole batch.
    """
    _, h, w = gray.shape
    if (h, w) == (height, width):
        return np.ascontiguousarray(gray)
    horizontal_first, exact_matmul = _route(h, w, height, width)
    return np.ascontiguousarray(_two_pass(gray, height, width, horizontal_first, exact_matmul))


def _ahash(gray: NDArray[np.uint8], hs: int) -> NDArray[np.bool_]:
    px = resize_gray(gray, hs, hs).reshape(len(gray), -1)
    out: NDArray[np.bool_] = px > px.mean(axis=1, keepdims=True)
    return out


def _dhash(gray: NDArray[np.uint8], hs: int) -> NDArray[np.bool_]:
    px = resize_gray(gray, hs, hs + 1)
    return (px[:, :, 1:] > px[:, :, :-1]).reshape(len(gray), -1)


def _phash(gray: NDArray[np.uint8], hs: int) -> NDArray[np.bool_]:
    """imagehash's dct(dct(pixels, axis=0), axis=1)[:hs, :hs], computed with the same 1-D transforms.

    Each 1-D DCT runs along a contiguous axis, and rows k >= hs of the first transform are
    dropped before the second, which never reads them: 2x less work, identical bits.
    """
    import scipy.fft

    px = resize_gray(gray, 4 * hs, 4 * hs)
    cols = np.ascontiguousarray(px.transpose(0, 2, 1))
    first = np.ascontiguousarray(scipy.fft.dct(cols, axis=2)[:, :, :hs].transpose(0, 2, 1))
    low = scipy.fft.dct(first, axis=2)[:, :, :hs].reshape(len(gray), -1)
    out: NDArray[np.bool_] = low > np.median(low, axis=1, keepdims=True)
    return out


def _whash(gray: NDArray[np.uint8], hs: int) -> NDArray[np.bool_]:
    import pywt

    n, h, w = gray.shape
    scale = max(2 ** int(np.log2(min(h, w))), hs)  # imagehash: the image's natural power of two
    ll_max = int(np.log2(scale))
    px = resize_gray(gray, scale, scale) / 255.0
    coeffs = list(pywt.wavedec2(px, "haar", level=ll_max, axes=(1, 2)))
    coeffs[0] = coeffs[0] * 0
    px = pywt.waverec2(coeffs, "haar", axes=(1, 2))
    low = pywt.wavedec2(px, "haar", level=ll_max - int(np.log2(hs)), axes=(1, 2))[0].reshape(n, -1)
    out: NDArray[np.bool_] = low > np.median(low, axis=1, keepdims=True)
    return out


_KERNELS = {"ahash": _ahash, "dhash": _dhash, "phash": _phash, "whash": _whash}


def hash_images(images: Images, cfg: HashConfig, on_progress: ProgressFn | None = None) -> Codes:
    """Bit-packed hashes (N, bits // 8) of a batch; the hex of a row equals str(imagehash.X(img))."""
    n = len(images)
    out = np.zeros((n, cfg.bits // 8), np.uint8)
    kernel = _KERNELS[cfg.method]

    def one(lo: int) -> int:
        hi = min(n, lo + BATCH)
        out[lo:hi] = np.packbits(kernel(to_gray(np.asarray(images[lo:hi])), cfg.hash_size), axis=1)
        return hi

    # Pillow's resize/convert and pocketfft release the GIL, so batches overlap on threads
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        for hi in pool.map(one, range(0, n, BATCH)):  # in order, so hi is how many are done
            report(on_progress, f"hash {cfg.label}", hi, n)
    return out


def exact_keys(images: Images) -> NDArray[np.uint8]:
    """(N, 16) blake2b digests of the decoded pixels: equal rows are exact duplicates."""
    out = np.zeros((len(images), 16), np.uint8)
    for lo in range(0, len(images), BATCH):
        block = np.ascontiguousarray(images[lo : lo + BATCH])
        for k, img in enumerate(block):
            out[lo + k] = np.frombuffer(hashlib.blake2b(img.tobytes(), digest_size=16).digest(), np.uint8)
    return out


def to_hex(codes: Codes) -> list[str]:
    """Hex strings in imagehash's format, for manifests and comparison."""
    return [bytes(row).hex() for row in codes]


def reference_hash(image: NDArray[np.uint8], cfg: HashConfig) -> str:
    """The imagehash package's hash of one (H, W, C) image, as hex: the reference for tests."""
    import imagehash

    pil = Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(image, "RGB")
    fn = {"ahash": imagehash.average_hash, "dhash": imagehash.dhash, "phash": imagehash.phash,
          "whash": imagehash.whash}[cfg.method]
    return str(fn(pil, hash_size=cfg.hash_size))


def dataset_hashes(ds: Dataset, cfg: HashConfig, on_progress: ProgressFn | None = None) -> Codes:
    """Hashes of every image of `ds`, cached by the dataset's fingerprint and `cfg` (a Ray result folder's opener
    stores its job's hashes under the same key)."""
    return cache.cached_arrays(hash_key(ds.fingerprint, cfg), lambda: {
        "codes": hash_images(ds.pixels(f"hashing with {cfg.label}"), cfg, on_progress)})["codes"]


def hash_key(fingerprint: str, cfg: HashConfig) -> str:
    """The cache key of a dataset's hashes."""
    return cache.make_key("hash", cfg, fingerprint)


def dataset_exact_keys(ds: Dataset) -> NDArray[np.uint8]:
    key = cache.make_key("exact", {}, ds.fingerprint)
    return cache.cached_arrays(key, lambda: {"keys": exact_keys(ds.pixels("pixel-exact keys"))})["keys"]
