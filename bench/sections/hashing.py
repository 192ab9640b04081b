"""Perceptual hashing throughput against imagehash."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import dataset, row, section, timed


@section
def hashing() -> list[dict[str, Any]]:
    """Throughput per method against imagehash called per image, and bit agreement on a sample."""
    from core.features.hashing import METHODS, HashConfig, hash_images, reference_hash, to_hex

    ds = dataset()
    images = np.asarray(ds.images)
    sample = images[np.random.default_rng(0).choice(len(images), min(10_000, len(images)), replace=False)]
    rows = []
    hash_images(images[:256], HashConfig("phash", 8))  # warm-up (imports, thread pool)
    for method in METHODS:
        cfg = HashConfig(method, 8)
        ref_s, ref = timed(lambda cfg=cfg: [reference_hash(x, cfg) for x in sample])
        ours_s, codes = timed(lambda cfg=cfg: hash_images(images, cfg), repeat=2)
        ours_sample = to_hex(hash_images(sample, cfg))
        agree = sum(a == b for a, b in zip(ours_sample, ref))
        per_ref, per_ours = ref_s / len(sample), ours_s / len(images)
        rows.append(row(f"hash {method}8, per image ({len(images):,} images)", "imagehash per image", per_ref,
                        per_ours, "s/image", f"identical bits on {agree:,} of {len(sample):,} sampled images "
                        f"({100 * agree / len(sample):.2f}%); ours {len(images) / ours_s:,.0f} images/s",
                        "hash_images(images, HashConfig(method, 8))"))
    return rows
