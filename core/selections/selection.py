"""The one result shape every method returns: which images stay, and why the others go.

Hash deduplication, semantic clustering and random subsets all produce a `Selection`, so the
app, the export and the retraining treat them alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.data.datasets import Dataset


@dataclass(frozen=True, eq=False)
class Selection:
    """Kept/removed over a pool of images (usually the train split).

    Arrays are (N,) over the whole dataset; images outside `pool` are neither kept nor removed.
    A removed image i was merged into `representative[i]` (a kept image of the same group) at
    `distance[i]`, in the method's `unit`: Hamming bits for hashes, 1 - the pair score for pairs, cosine
    distance for embeddings.
    """

    method: str
    params: dict[str, Any]
    pool: NDArray[np.bool_]
    keep: NDArray[np.bool_]
    group: NDArray[np.int64] = field(repr=False)
    representative: NDArray[np.int64] = field(repr=False)
    distance: NDArray[np.float64] = field(repr=False)

    @property
    def kept(self) -> NDArray[np.int64]:
        return np.flatnonzero(self.pool & self.keep)

    @property
    def removed(self) -> NDArray[np.int64]:
        return np.flatnonzero(self.pool & ~self.keep)

    @property
    def kept_fraction(self) -> float:
        return float(len(self.kept) / max(1, int(self.pool.sum())))

    def per_class(self, labels: NDArray[np.int64], n_classes: int) -> dict[str, NDArray[np.int64]]:
        """Kept and removed counts per class index."""
        return {
            "kept": np.bincount(labels[self.kept], minlength=n_classes),
            "removed": np.bincount(labels[self.removed], minlength=n_classes),
        }

    def describe(self) -> str:
        return f"{self.method} " + json.dumps(self.params, sort_keys=True)

    @property
    def unit(self) -> str:
        """What `distance` measures, in words."""
        return UNITS.get(self.method, "distance")

    def measure(self, i: int) -> str:
        """Image i's distance to its representative in the method's own unit, e.g. '3 bits', 'pair score 0.962'."""
        d = float(self.distance[i])
        if self.method == "pairs":
            return f"pair score {1.0 - d:.3f}"
        if self.method == "hash":
            return f"{d:.0f} bits"
        return f"{self.unit} {d:.4g}"

    def reason(self, i: int, ds: Dataset) -> str:
        """A readable reason for image i's status."""
        if not self.pool[i]:
            return "not in the pool"
        if self.keep[i]:
            return "kept" if self.group[i] < 0 else f"kept: representative of group {self.group[i]}"
        return (f"redundant: group {self.group[i]}, {self.measure(i)} to "
                f"{ds.ids[self.representative[i]]} ({self.describe()})")


UNITS = {"hash": "Hamming bits", "pairs": "1 - pair score", "semantic": "cosine distance"}


def grouped(method: str, params: dict[str, Any], pool: NDArray[np.bool_], group: NDArray[np.int64],
            representative: NDArray[np.int64], distance: NDArray[np.float64]) -> Selection:
    """A selection from groups: an image with a representative is removed (merged into it), the rest stay.

    group: (N,) group number or -1; representative: (N,) the kept image a removed one merges into, else -1;
    distance: (N,) to it, in the method's unit (ignored where the image stays).
    """
    keep = representative < 0
    return Selection(method, params, pool, keep, group, representative, np.where(keep, np.nan, distance))


def empty_like(n: int, pool: NDArray[np.bool_], method: str, params: dict[str, Any]) -> Selection:
    """Everything in the pool kept, no groups."""
    return Selection(method, params, pool.copy(), np.ones(n, bool), np.full(n, -1, np.int64),
                     np.full(n, -1, np.int64), np.full(n, np.nan))


def random_like(target: Selection, labels: NDArray[np.int64], seed: int) -> Selection:
    """A random subset with exactly `target`'s kept count in every class (stratified)."""
    rng = np.random.default_rng(seed)
    keep = ~target.pool.copy()
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    want = target.per_class(labels, n_classes)["kept"]
    for c in range(n_classes):
        members = np.flatnonzero(target.pool & (labels == c))
        keep[rng.choice(members, size=int(want[c]), replace=False)] = True
    n = len(labels)
    return Selection("random", {"like": target.describe(), "seed": seed}, target.pool.copy(), keep,
                     np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.full(n, np.nan))
