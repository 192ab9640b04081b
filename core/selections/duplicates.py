"""Near-duplicate groups from hashes: three scopes, explicit keep rules, a cheap slider.

The parameter-free work (hashes, and every pair within the largest radius the app offers)
is cached once; a threshold is then a filter `d <= r` plus connected components, so a slider
move costs milliseconds. Groups are connected components, which can chain: each group reports
its diameter (largest internal distance), so a chain that merged distant images is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from core.data import cache
from core.data.datasets import TRAIN, Dataset
from core.data.scope import Scope, parse, scope_codes
from core.data.types import Codes, ProgressFn
from core.features.hashing import HashConfig, dataset_exact_keys, dataset_hashes
from core.features.neighbors import Pairs, find_pairs, to_words
from core.selections.selection import Selection, grouped

KEEP_RULES = ("first", "largest", "medoid")
DEFAULT_KEEP_RULE = "first"
DEFAULT_RADIUS = 4


def max_radius(bits: int) -> int:
    """The largest radius the index stores (and the app's slider offers): 12 of 64 bits, 48 of 256."""
    return bits * 3 // 16


@dataclass(frozen=True, eq=False)
class DuplicateIndex:
    """Hashes plus every pair within `max_radius`, each pair tagged with its scope."""

    config: HashConfig
    codes: Codes
    pairs: Pairs
    scope: NDArray[np.int8]  # (P,) each pair's Scope.code
    max_radius: int


def pair_scopes(pairs: Pairs, labels: NDArray[np.int64], split: NDArray[np.int8]) -> NDArray[np.int8]:
    """Each pair's Scope.code (core.data.scope)."""
    return scope_codes(pairs.i, pairs.j, labels, split)


def build_index(ds: Dataset, cfg: HashConfig, on_progress: ProgressFn | None = None) -> DuplicateIndex:
    """Hash `ds` and find all pairs within the largest radius; both cached on disk."""
    codes = dataset_hashes(ds, cfg, on_progress)
    top = max_radius(cfg.bits)
    key = cache.make_key("pairs", {"hash": cfg, "radius": top}, ds.fingerprint)

    def compute() -> dict[str, NDArray[np.integer]]:
        p = find_pairs(codes, top, on_progress=on_progress)
        return {"i": p.i, "j": p.j, "d": p.d}

    raw = cache.cached_arrays(key, compute)
    pairs = Pairs(raw["i"], raw["j"], raw["d"])
    return DuplicateIndex(cfg, codes, pairs, pair_scopes(pairs, ds.labels, ds.split), top)


def exact_groups(ds: Dataset) -> list[NDArray[np.int64]]:
    """Groups of pixel-identical images (by blake2b of the decoded pixels), largest first.

    Identical pixels give identical hashes, so these are also pairs at distance 0 of any index.
    """
    keys = dataset_exact_keys(ds)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    groups = [g for g in np.split(order, bounds) if len(g) > 1]
    return sorted(groups, key=lambda g: (-len(g), int(g[0])))


@dataclass(frozen=True, eq=False)
class Groups:
    """Connected components (>= 2 members) at one radius and scope, largest first.

    Group g's members are `members[offsets[g]:offsets[g + 1]]`; `keep[g]` is the member kept
    under the keep rule, `dist_to_keep` (aligned with `members`) each member's Hamming
    distance to it, and `diameter[g]` the largest distance between any two members.
    """

    radius: int
    scope: Scope
    keep_rule: str
    members: NDArray[np.int64]
    offsets: NDArray[np.int64]
    keep: NDArray[np.int64]
    dist_to_keep: NDArray[np.int16]
    diameter: NDArray[np.int16]

    def __len__(self) -> int:
        return int(len(self.offsets) - 1)

    def group(self, g: int) -> NDArray[np.int64]:
        return self.members[self.offsets[g] : self.offsets[g + 1]]

    def distances(self, g: int) -> NDArray[np.int16]:
        return self.dist_to_keep[self.offsets[g] : self.offsets[g + 1]]

    @property
    def sizes(self) -> NDArray[np.int64]:
        return np.diff(self.offsets)

    @property
    def n_images(self) -> int:
        return int(self.offsets[-1])


def _distance_matrix(words: NDArray[np.uint64]) -> NDArray[np.int16]:
    out: NDArray[np.int16] = np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(axis=2).astype(np.int16)
    return out


def _choose(members: NDArray[np.int64], words: NDArray[np.uint64], keep_rule: str,
            sizes: NDArray[np.int32] | None) -> tuple[int, NDArray[np.int16], int]:
    """(kept member, each member's distance to it, group diameter) for one group."""
    dm = _distance_matrix(words[members])
    if keep_rule == "first":
        k = 0
    elif keep_rule == "largest":
        area = (sizes[members, 0].astype(np.int64) * sizes[members, 1]) if sizes is not None else np.zeros(len(members))
        k = int(np.argmax(area))  # ties: the first (lowest index)
    elif keep_rule == "medoid":
        k = int(np.argmin(dm.sum(axis=1, dtype=np.int64)))
    else:
        raise ValueError(f"unknown keep rule {keep_rule!r}: must be one of {', '.join(KEEP_RULES)}")
    return int(members[k]), dm[k], int(dm.max())


def clamp_radius(radius: int, index: DuplicateIndex) -> int:
    """The radius actually cut: at most the largest radius the index holds pairs for."""
    return max(0, min(int(radius), index.max_radius))


def groups_at(index: DuplicateIndex, radius: int, scope: Scope | str = Scope.WITHIN, keep_rule: str = "first",
              sizes: NDArray[np.int32] | None = None, restrict: NDArray[np.bool_] | None = None) -> Groups:
    """Groups at `radius` (<= index.max_radius) in one scope; `restrict` limits the images used."""
    scope = parse(scope)
    if keep_rule not in KEEP_RULES:
        raise ValueError(f"unknown keep rule {keep_rule!r}: must be one of {', '.join(KEEP_RULES)}")
    if not 0 <= radius <= index.max_radius:
        raise ValueError(f"radius must be between 0 and {index.max_radius}, got {radius}")
    p = index.pairs
    mask = (p.d <= radius) & (index.scope == scope.code)
    if restrict is not None:
        mask &= restrict[p.i] & restrict[p.j]
    i, j = p.i[mask], p.j[mask]
    n = len(index.codes)
    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    touched = np.zeros(n, bool)
    touched[i] = touched[j] = True
    nodes = np.flatnonzero(touched)
    order = nodes[np.lexsort((nodes, comp[nodes]))]
    comps, starts, counts = np.unique(comp[order], return_index=True, return_counts=True)
    rank = np.lexsort((order[starts], -counts))  # largest first, then by first member
    words = to_words(index.codes)
    members, offsets, keep, dist, diam = [], [0], [], [], []
    for g in rank:
        mem = order[starts[g] : starts[g] + counts[g]]
        k, d, dia = _choose(mem, words, keep_rule, sizes)
        members.append(mem)
        dist.append(d)
        keep.append(k)
        diam.append(dia)
        offsets.append(offsets[-1] + len(mem))
    return Groups(radius, scope, keep_rule, _cat(members, np.int64), np.array(offsets, np.int64),
                  np.array(keep, np.int64), _cat(dist, np.int16), np.array(diam, np.int16))


def _cat(parts: list[NDArray[Any]], dtype: type[np.generic]) -> NDArray[Any]:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def leaked_test_images(index: DuplicateIndex, radius: int, split: NDArray[np.int8]) -> NDArray[np.int64]:
    """Test images with a near-duplicate in the train split at `radius` (Barz & Denzler's leakage)."""
    p = index.pairs
    mask = (p.d <= radius) & (index.scope == Scope.LEAKAGE.code)
    ends = np.concatenate([p.i[mask], p.j[mask]])
    return np.unique(ends[split[ends] != TRAIN])


def hash_selection(ds: Dataset, index: DuplicateIndex, radius: int, keep_rule: str = "first",
                   pool_split: int = TRAIN) -> Selection:
    """Within-class dedup of one split: each group keeps one image, the rest are removed."""
    return dedup_selection(index, radius, ds.split, ds.sizes, keep_rule, pool_split)


def dedup_selection(index: DuplicateIndex, radius: int, split: NDArray[np.int8], sizes: NDArray[np.int32] | None,
                    keep_rule: str = "first", pool_split: int = TRAIN) -> Selection:
    """hash_selection over plain arrays (the scale-out path has no Dataset object)."""
    pool = split == pool_split
    groups = groups_at(index, radius, Scope.WITHIN, keep_rule, sizes, restrict=pool)
    n = len(split)
    group = np.repeat(np.arange(len(groups), dtype=np.int64), groups.sizes)
    of = np.full(n, -1, np.int64)
    of[groups.members] = group
    rep = np.full(n, -1, np.int64)
    rep[groups.members] = np.repeat(groups.keep, groups.sizes)
    rep[groups.keep] = -1
    dist = np.full(n, np.nan)
    dist[groups.members] = groups.dist_to_keep
    params = {"hash": index.config.label, "radius": radius, "keep": keep_rule}
    return grouped("hash", params, pool, of, rep, dist)
