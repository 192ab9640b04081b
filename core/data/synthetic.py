"""Synthetic data with planted truth, for tests and benchmarks: precision and recall are exact.

Base images are smooth random patterns (upsampled noise plus a gradient), so distinct bases
lie far apart in every hash; each planted copy is a base under a transform that perceptual
hashes are meant to survive.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance

TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "exact": lambda im: im.copy(),
    "jpeg": lambda im: _jpeg(im, 70),
    "resize": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR).resize(
        im.size, Image.Resampling.BILINEAR),
    "brightness": lambda im: ImageEnhance.Brightness(im).enhance(1.08),
    "crop": lambda im: im.crop((1, 1, im.width - 1, im.height - 1)).resize(im.size, Image.Resampling.BICUBIC),
}


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def base_image(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """A smooth random RGB pattern: 8x8 noise upsampled, plus a random gradient."""
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    im = np.asarray(Image.fromarray(small, "RGB").resize((size, size), Image.Resampling.BICUBIC), np.float64)
    yy, xx = np.mgrid[0:size, 0:size] / size
    grad = (rng.uniform(-60, 60) * xx + rng.uniform(-60, 60) * yy)[..., None]
    return Image.fromarray(np.clip(im + grad, 0, 255).astype(np.uint8), "RGB")


@dataclass(frozen=True)
class Planted:
    """Where each file went and which files are copies of one base image (the true groups)."""

    files: list[tuple[str, str, str]]  # (split, class, file name)
    base_of: NDArray[np.int64]  # (len(files),) the base image each file shows
    transform: list[str]

    def true_pairs(self, index_of: dict[str, int], same_split: bool, same_class: bool) -> set[tuple[int, int]]:
        """Pairs of dataset indices that show the same base, restricted to a scope."""
        by_base: dict[int, list[int]] = {}
        for k, b in enumerate(self.base_of):
            by_base.setdefault(int(b), []).append(k)
        out = set()
        for members in by_base.values():
            for a in members:
                for b in members:
                    fa, fb = self.files[a], self.files[b]
                    if a < b and (fa[0] == fb[0]) == same_split and (not same_split or (fa[1] == fb[1]) == same_class):
                        ia, ib = index_of["/".join(fa)], index_of["/".join(fb)]
                        out.add((min(ia, ib), max(ia, ib)))
        return out


def write_planted_folder(root: Path, n_classes: int = 3, per_class: int = 12, seed: int = 0,
                         copies: tuple[str, ...] = ("exact", "jpeg", "resize", "brightness", "crop")) -> Planted:
    """An image folder root/{train,test}/<class>/*.png with planted copies.

    Per class: `per_class` distinct bases in train; the first len(copies) bases each get one
    copy in the same class (one per transform); base 0 of class c also appears in class c+1
    (a label conflict), and base 1 of each class appears in test (leakage).
    """
    rng = np.random.default_rng(seed)
    files: list[tuple[str, str, str]] = []
    base_of: list[int] = []
    kinds: list[str] = []
    bases: list[Image.Image] = []

    def put(split: str, cls: str, name: str, im: Image.Image, base: int, kind: str) -> None:
        path = root / split / cls / name
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, format="PNG")
        files.append((split, cls, name))
        base_of.append(base)
        kinds.append(kind)

    classes = [f"class{c}" for c in range(n_classes)]
    for cls in classes:
        for k in range(per_class):
            b = len(bases)
            bases.append(base_image(rng))
            put("train", cls, f"b{k:03d}.png", bases[b], b, "base")
            if k < len(copies):
                put("train", cls, f"b{k:03d}_{copies[k]}.png", TRANSFORMS[copies[k]](bases[b]), b, copies[k])
        for k in range(per_class // 2, per_class):
            b = len(bases)
            bases.append(base_image(rng))
            put("test", cls, f"t{k:03d}.png", bases[b], b, "base")
    for c, cls in enumerate(classes):
        b0 = c * (per_class + per_class - per_class // 2)
        nxt = classes[(c + 1) % n_classes]
        if nxt != cls:
            put("train", nxt, f"conflict_from_{cls}.png", TRANSFORMS["jpeg"](bases[b0]), b0, "conflict")
        put("test", cls, "leak_b001.png", TRANSFORMS["jpeg"](bases[b0 + 1]), b0 + 1, "leak")
    return Planted(files, np.array(base_of, np.int64), kinds)


def planted_codes(n: int, n_planted: int, max_flip: int, bits: int = 64, seed: int = 0) -> tuple[
        NDArray[np.uint8], NDArray[np.int64]]:
    """Random codes with `n_planted` copies at 1..max_flip flipped bits; returns codes and (src, dst)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    src = rng.choice(n, n_planted, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), n_planted, replace=False)
    bitsarr = np.unpackbits(codes[src], axis=1)
    for row in range(n_planted):
        flip = rng.choice(bits, rng.integers(1, max_flip + 1), replace=False)
        bitsarr[row, flip] ^= 1
    codes[dst] = np.packbits(bitsarr, axis=1)
    return codes, np.stack([src, dst], axis=1)
