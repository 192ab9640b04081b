"""From decoded arrays to duplicate groups against imagededup."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import dataset, row, section, timed
from core.data.scope import Scope


@section
def end_to_end() -> list[dict[str, Any]]:
    """From decoded arrays to duplicate groups (pHash, radius 10): ours against imagededup on 20,000 images."""
    from imagededup.methods import PHash

    from core.features.hashing import HashConfig, hash_images
    from core.features.neighbors import find_pairs
    from core.selections.duplicates import DuplicateIndex, groups_at, pair_scopes

    ds = dataset()
    n = min(20_000, len(ds))
    images = np.asarray(ds.images[:n])
    labels, split = ds.labels[:n], ds.split[:n]

    def ours() -> int:
        codes = hash_images(images, HashConfig("phash", 8))
        p = find_pairs(codes, 10)
        index = DuplicateIndex(HashConfig("phash", 8), codes, p, pair_scopes(p, labels, split), 10)
        return len(groups_at(index, 10, Scope.WITHIN))

    def theirs() -> int:
        ph = PHash(verbose=False)
        enc = {str(i): ph.encode_image(image_array=x) for i, x in enumerate(images)}
        return len(ph.find_duplicates(encoding_map=enc, max_distance_threshold=10))

    ours()
    ours_s, _ = timed(ours)
    base_s, _ = timed(theirs)
    return [row(f"end to end, arrays to groups, {n:,} images", "imagededup encode_image + find_duplicates",
                base_s, ours_s, notes="imagededup's pHash bits differ from imagehash's (see docs); times only")]
