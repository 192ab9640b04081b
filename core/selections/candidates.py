"""Near-duplicate candidates a person would agree with: exact neighbours on pixel cues, then a pair score.

Perceptual hashes move many bits under a shift of a few pixels, a re-crop or a colour change,
and plain backgrounds bring different photos a few bits apart. People who clean datasets find
candidates by nearest neighbours and judge each pair; this module does the first part well:

1. The pixel cue: every image at `side` x `side` (area resize), mean-centred and L2-normalised per
   image, so brightness and contrast shifts change nothing. Each query is searched as it is, shifted
   by `query_shift` pixels up, down, left and right, and mirrored (ten views), so a shifted or
   flipped copy finds its original: on 603 pairs of CIFAR-10 judged duplicates, 8-pixel views
   without the shifts put the true twin among a query's 5 nearest for 94% of them, with them 98.5%.
   Exact top-k neighbours per view by inner product with FAISS (IndexFlatIP, in chunks: memory
   stays bounded); within a class, queries search their own class only.
2. Every pHash pair within `hash_radius` bits adds its pairs (nothing the hash method finds is lost).
3. Every pair gets the pair score (core.features.pair_score): shifts, a flip and the image's detail; each
   query's best pairs are also compared at the zooms, which catch re-crops and stretches.
4. The trained network's embedding (its penultimate layer), when it is on disk already, adds the
   pairs the other cues did not find, scored the same way and cached on their own: a network
   trained later costs only its own pairs.

Each candidate says which cue saw it most similar (among the pixel views and the hashes, or the
network for the pairs only it found), and its score; the lists are sorted best first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray
from PIL import Image

from core.data import cache
from core.data.datasets import TEST, TRAIN, Dataset
from core.data.scope import SCOPES, Scope, parse
from core.data.types import Images, ProgressFn, report
from core.features.embedding import cached_embedding, cached_embedding_key
from core.features.hashing import HashConfig
from core.features.pair_score import PairScoreConfig, Zoom, score_pairs
from core.features.search import ExactIndex, IvfIndex, vector_index
from core.selections.duplicates import build_index

# 3: detail, zooms; 4: scaled to the size; 5: network, hash cues; 6: credit the best cue; 7: shifted query views,
# within-class search per class; 8: the network's pairs cached on their own; 9: the network's pairs zoomed where they
# enter the query's top 3 of both parts (was: their own top 3), unzoomed scores stored
CANDIDATES_VERSION = 9
SEARCHES = ("auto", "exact", "ivf")
APPROXIMATE_FROM = 250_000  # base vectors from which "auto" searches an IVF index instead of every vector
# the phases of a candidate list and their share of its time (CIFAR-10, 2 cores: docs/BENCHMARKS.md), for one bar
STAGES = (("pixel cue", 2.0), ("neighbours", 29.0), ("hash phash8", 2.0), ("search", 2.0), ("pair score", 15.0),
          ("pair score at the zooms", 43.0), ("network cue: pair score", 6.0),
          ("network cue: pair score at the zooms", 1.5))


@dataclass(frozen=True)
class CandidateConfig:
    """The pixel cue's side(s), the shift of its extra query views, how many neighbours each view keeps,
    the other cues, and the pair score's search."""

    sides: tuple[int, ...] = (8,)
    query_shift: int = 2  # pixels (for 32-pixel images; other sizes in proportion); 0: no shifted views
    top_k: int = 5
    network: bool = True  # also the trained network's embedding, when it is on disk already (never trained here)
    hash_radius: int = 8  # also every pHash pair within this many bits (0: none)
    zoomed_per_query: int = 3  # a query's best pairs scored again at the zooms (a re-crop's twin can rank 3rd unzoomed)
    score: PairScoreConfig = field(default_factory=PairScoreConfig)
    search: str = "auto"  # exact: every base vector; ivf: an inverted-file index (core.features.search); auto: by size

    def __post_init__(self) -> None:
        if not self.sides or min(self.sides) < 4 or self.top_k < 1 or min(self.query_shift, self.zoomed_per_query) < 0:
            raise ValueError("every side must be at least 4, top_k at least 1, query_shift and zoomed_per_query "
                             "at least 0")
        if self.search not in SEARCHES:
            raise ValueError(f"unknown search {self.search!r}: must be one of {', '.join(SEARCHES)}")

    def engine(self, n_base: int) -> str:
        """The search a base of n_base vectors gets: 'ivf' or 'exact'."""
        return ("ivf" if n_base >= APPROXIMATE_FROM else "exact") if self.search == "auto" else self.search


@dataclass(frozen=True, eq=False)
class Candidates:
    """Pairs (a, b) best first: a is the query (a test image for leakage), b its neighbour in train."""

    scope: Scope
    a: NDArray[np.int64]
    b: NDArray[np.int64]
    cue_similarity: NDArray[np.float32]  # cosine on the cue that found the pair, in [-1, 1]
    score: NDArray[np.float32]  # the pair score (core.features.pair_score), in [-1, 1]
    cue: NDArray[np.str_]  # the cue that saw the pair most similar, e.g. "pixels8" or "pixels8-mirrored"

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, rows: NDArray[np.int64]) -> Candidates:
        return Candidates(self.scope, self.a[rows], self.b[rows], self.cue_similarity[rows], self.score[rows],
                          self.cue[rows])

    def best_per_query(self) -> Candidates:
        """Each query's best pair only, in the same order: the leakage list ranks test images, and a
        test image with three copies in train should take one place in it, not three."""
        _, first = np.unique(self.a, return_index=True)
        return self.subset(np.sort(first))

    def top_queries(self, n: int) -> NDArray[np.int64]:
        """The first n distinct query images in score order (for leakage: the test images to look at)."""
        _, first = np.unique(self.a, return_index=True)
        return self.a[np.sort(first)][:n]


def shifted(images: NDArray[Any], dy: int, dx: int) -> NDArray[Any]:
    """Each image moved down by dy and right by dx pixels, the edge repeated into the gap (same shape)."""
    h, w = images.shape[1:3]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return images[:, rows][:, :, cols]


@njit(parallel=True, cache=True, nogil=True)
def _box_kernel(images: NDArray[np.uint8], mirrored: bool, dy: int, dx: int, ry: int, rx: int,
                out: NDArray[np.uint8]) -> None:
    """out[i] = Pillow's BOX resize of images[i] shifted by (dy, dx) (`shifted`) and then, when mirrored, flipped
    left-right; reads the pixels where they are (no shifted or flipped copy). Each axis shrinks by a power of two f;
    a run of f values is divided by f as (sum << r + 2^21) >> 22, r = 23 - f.bit_length() (ry down, rx across)."""
    n, h, w, c = images.shape
    side_y, side_x = out.shape[1], out.shape[2]
    fy, fx = h // side_y, w // side_x
    for i in prange(n):
        for oy in range(side_y):
            for ox in range(side_x):
                for ch in range(c):
                    total = 0
                    for yy in range(fy):
                        row = min(max(oy * fy + yy - dy, 0), h - 1)
                        run = 0
                        for xx in range(fx):
                            j = ox * fx + xx
                            if mirrored:
                                j = w - 1 - j
                            run += images[i, row, min(max(j - dx, 0), w - 1), ch]
                        total += ((run << rx) + (1 << 21)) >> 22
                    out[i, oy, ox, ch] = ((total << ry) + (1 << 21)) >> 22


def _box_power_of_two(images: NDArray[np.uint8], side: int, mirrored: bool = False,
                      shift: tuple[int, int] = (0, 0)) -> NDArray[np.uint8] | None:
    """Pillow's BOX resize of (N, h, w, C) uint8 images, shifted by `shift` (`shifted`) and mirrored when asked, to
    side x side, where each axis shrinks by a power of two (else None): Pillow sums each run of f pixels along a row,
    divides by f with rounding to the nearest integer (fixed point, halves up), then does the same down each column;
    the same integer arithmetic here gives its bytes exactly (tests/test_candidates.py), in one compiled pass that
    reads the pixels where they are (a shifted view of 50,000 CIFAR-10 images: 0.25 s, against 1.5 s when the
    shifted and flipped copies were made first)."""
    n, h, w, c = images.shape
    fy, fx = h // side, w // side
    if h != fy * side or w != fx * side or fy & (fy - 1) or fx & (fx - 1):
        return None
    out = np.empty((n, side, side, c), np.uint8)
    _box_kernel(np.ascontiguousarray(images), mirrored, int(shift[0]), int(shift[1]), 23 - fy.bit_length(),
                23 - fx.bit_length(), out)
    return out


def pixel_cue(images: Images, side: int = 16, mirrored: bool = False,
              shift: tuple[int, int] = (0, 0)) -> NDArray[np.float32]:
    """(N, side*side*C) float32: area-resized, mean-centred and L2-normalised per image (mirrored: flipped
    first; shift: moved by (dy, dx) pixels first, see `shifted`)."""
    n, h, w, c = images.shape
    arr = np.asarray(images)
    small = _box_power_of_two(arr, side, mirrored, shift) if arr.dtype == np.uint8 else None
    if small is not None:
        out = small.reshape(n, -1).astype(np.float32)
    else:
        if shift != (0, 0):
            images = shifted(images, *shift)
        out = np.empty((n, side * side * c), np.float32)
        for i in range(n):
            one = images[i] if c == 3 else images[i, :, :, 0]
            one = np.ascontiguousarray(one[:, ::-1]) if mirrored else one
            out[i] = np.asarray(Image.fromarray(one).resize((side, side), Image.Resampling.BOX), np.float32).reshape(-1)
    out -= out.mean(axis=1, keepdims=True)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
    return out


class Pixels(Protocol):
    """The two operations of the candidates that read pixels: the cue vectors of some images, and the pair scores of
    some pairs. Everything else (searching, merging, ranking) works on their results, so where the pixels are (one
    array here, or a Ray cluster's shards: core.pipelines.scale_candidates) changes nothing in the lists."""

    def cue(self, idx: NDArray[np.int64], side: int, mirrored: bool, shift: tuple[int, int],
            on_progress: ProgressFn | None) -> NDArray[np.float32]:
        """pixel_cue of the images idx (in that order)."""

    def scores(self, a: NDArray[np.int64], b: NDArray[np.int64], cfg: PairScoreConfig, zooms: tuple[Zoom, ...],
               on_progress: ProgressFn | None, phase: str) -> NDArray[np.float32]:
        """score_pairs of the pairs (a[k], b[k])."""


class LocalPixels:
    """The dataset's decoded array, here (a DatasetError says what to run where the pixels are elsewhere)."""

    def __init__(self, ds: Dataset, purpose: str = "the near-duplicate candidates") -> None:
        self.images = ds.pixels(purpose)

    def cue(self, idx: NDArray[np.int64], side: int, mirrored: bool, shift: tuple[int, int],
            on_progress: ProgressFn | None) -> NDArray[np.float32]:
        parts = []
        for lo in range(0, len(idx), 8192):
            parts.append(pixel_cue(np.asarray(self.images[idx[lo : lo + 8192]]), side, mirrored, shift))
            report(on_progress, "pixel cue", min(len(idx), lo + 8192), len(idx))
        c = self.images.shape[-1]
        return np.concatenate(parts) if parts else np.zeros((0, side * side * c), np.float32)

    def scores(self, a: NDArray[np.int64], b: NDArray[np.int64], cfg: PairScoreConfig, zooms: tuple[Zoom, ...],
               on_progress: ProgressFn | None, phase: str) -> NDArray[np.float32]:
        return score_pairs(self.images, a, b, cfg, zooms, on_progress=on_progress, phase=phase)


def cached_pixel_cue(ds: Dataset, side: int, mirrored: bool = False, on_progress: ProgressFn | None = None,
                     pixels: Pixels | None = None) -> NDArray[np.float32]:
    """pixel_cue of every image of ds, cached by the dataset's fingerprint."""
    key = cache.make_key("pixel-cue", {"side": side, "mirrored": mirrored, "version": 1}, ds.fingerprint)

    def compute() -> dict[str, NDArray[np.float32]]:
        source = pixels or LocalPixels(ds, "the pixel cue")
        return {"cue": source.cue(np.arange(len(ds)), side, mirrored, (0, 0), on_progress)}

    return cache.cached_arrays(key, compute)["cue"]


def query_views(cfg: CandidateConfig, image_side: int) -> list[tuple[int, bool, tuple[int, int]]]:
    """(side, mirrored, shift) of every view a query is searched with: as it is and shifted by
    query_shift (scaled to the image) up, down, left and right, each also mirrored when the score flips."""
    step = max(1, round(cfg.query_shift * image_side / 32)) if cfg.query_shift else 0
    shifts = [(0, 0)] + ([(step, 0), (-step, 0), (0, step), (0, -step)] if step else [])
    return [(side, mirrored, sh) for side in cfg.sides for mirrored in ((False, True) if cfg.score.flip else (False,))
            for sh in shifts]


def view_name(side: int, mirrored: bool, shift: tuple[int, int]) -> str:
    return f"pixels{side}" + ("-shifted" if shift != (0, 0) else "") + ("-mirrored" if mirrored else "")


def nearest(queries: NDArray[np.float32], base: NDArray[np.float32], k: int, search: str = "exact",
            chunk: int = 4096) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Top-k neighbours of each query in base by inner product: exact (core.features.search.exact_topk), or
    through an IVF index (search="ivf", core.features.search.ivf_topk; its recall is measured in `make bench`)."""
    from core.features.search import exact_topk, ivf_topk

    if search == "ivf":
        return ivf_topk(queries, base, k)
    return exact_topk(queries, base, k, chunk)


def _searches(ds: Dataset, scope: Scope) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """(queries, base) index sets: leakage, test against train; within, each class's training images
    against themselves; cross, train against train (pairs of two classes are kept later)."""
    train = np.flatnonzero(ds.split == TRAIN)
    if scope is Scope.LEAKAGE:
        return [(np.flatnonzero(ds.split == TEST), train)]
    if scope is Scope.WITHIN:
        per_class = [train[ds.labels[train] == c] for c in range(len(ds.classes))]
        return [(members, members) for members in per_class if len(members) > 1]
    return [(train, train)]


def top_per_query(a: NDArray[np.int64], score: NDArray[np.float32], m: int) -> NDArray[np.int64]:
    """Positions of each query's m best-scored pairs (ties by position)."""
    order = np.lexsort((-score, a))  # by query, best first
    a_sorted = a[order]
    rank = np.arange(len(a)) - np.searchsorted(a_sorted, a_sorted, side="left")
    return np.sort(order[rank < m])


def _hash_pairs(ds: Dataset, scope: Scope, radius: int, on_progress: ProgressFn | None) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """pHash pairs within `radius` bits in one scope, as (query, match, 1 - bits/64); a test image first."""
    index = build_index(ds, HashConfig("phash", 8), on_progress)
    p = index.pairs
    want = scope.code
    keep = (p.d <= radius) & (index.scope == want)
    if scope is not Scope.LEAKAGE:
        keep &= (ds.split[p.i] == TRAIN) & (ds.split[p.j] == TRAIN)
    i, j, d = p.i[keep], p.j[keep], p.d[keep]
    if scope is Scope.LEAKAGE:  # the test image is the query
        swap = ds.split[i] != TEST
        i, j = np.where(swap, j, i), np.where(swap, i, j)
    return i.astype(np.int64), j.astype(np.int64), (1 - d / 64).astype(np.float32)


Found = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.str_]]  # a, b, similarity, cue


def _k(cfg: CandidateConfig, scope: Scope) -> int:
    """Neighbours asked per query: within train the first one is the image itself."""
    return cfg.top_k if scope is Scope.LEAKAGE else cfg.top_k + 1


def _neighbours(queries: NDArray[np.int64], pool: NDArray[np.int64], query: NDArray[np.float32],
                index: IvfIndex | ExactIndex, k: int, cue: str) -> Found:
    idx, sims = index.search(query, k)
    found = idx.reshape(-1) >= 0  # an approximate search may find fewer than k
    return (np.repeat(queries, idx.shape[1])[found], pool[idx.reshape(-1)[found]], sims.reshape(-1)[found],
            np.full(int(found.sum()), cue))


def _cue_pairs(ds: Dataset, scope: Scope, cfg: CandidateConfig, on_progress: ProgressFn | None,
               pixels: Pixels) -> list[Found]:
    """The pixel views' neighbours and the pHash pairs of one scope; one index per side and search, searched by
    every view of the queries (an IVF index is trained once)."""
    k, found = _k(cfg, scope), []
    views = query_views(cfg, min(ds.image_shape[:2]))
    searches = _searches(ds, scope)
    n_done, total = 0, len(views) * len(searches)
    for side in cfg.sides:
        base = cached_pixel_cue(ds, side, False, on_progress, pixels)  # read once per side, not once per class
        flip = cfg.score.flip
        flipped = cached_pixel_cue(ds, side, True, on_progress, pixels) if flip else None
        for queries, pool in searches:
            index = vector_index(base[pool], cfg.engine(len(pool)))
            for _, mirrored, shift in [v for v in views if v[0] == side]:
                if (mirrored, shift) == (False, (0, 0)):
                    query = base[queries]
                elif mirrored and shift == (0, 0) and flipped is not None:
                    query = flipped[queries]
                else:
                    query = pixels.cue(queries, side, mirrored, shift, None)
                found.append(_neighbours(queries, pool, query, index, k, view_name(side, mirrored, shift)))
                n_done += 1
                report(on_progress, "neighbours", n_done, total)
    if cfg.hash_radius > 0:
        ha, hb, hsim = _hash_pairs(ds, scope, cfg.hash_radius, on_progress)
        found.append((ha, hb, hsim, np.full(len(ha), f"phash<={cfg.hash_radius}")))
    return found


def _network_pairs(ds: Dataset, scope: Scope, cfg: CandidateConfig, vectors: NDArray[np.float32]) -> list[Found]:
    """Neighbours in the penultimate layer of the network trained on the data (cosine: the vectors are L2-normal)."""
    return [_neighbours(queries, pool, vectors[queries], vector_index(vectors[pool], cfg.engine(len(pool))),
                        _k(cfg, scope), "network") for queries, pool in _searches(ds, scope)]


def _scored(ds: Dataset, scope: Scope, cfg: CandidateConfig, found: list[Found], on_progress: ProgressFn | None,
            pixels: Pixels, leave_out: tuple[Candidates, NDArray[np.float32]] | None = None,
            phase: str = "pair score") -> tuple[Candidates, NDArray[np.float32]]:
    """The distinct pairs of `found` that belong to the scope (and are not in `leave_out`), each credited to the
    cue that saw it most similar, with their pair score, best first, and their score before the zooms.

    A query's best `zoomed_per_query` pairs are scored again at the zooms; with `leave_out` (the other part and
    its unzoomed scores), the best of both parts together, so a query's zoomed pairs are the same whichever
    part found them."""
    if not found:
        return _empty(scope), np.zeros(0, np.float32)
    a, b = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
    sim, cue = np.concatenate([f[2] for f in found]), np.concatenate([f[3] for f in found])
    if scope is not Scope.LEAKAGE:  # a training pair found from either end is one pair, smaller index first
        a, b = np.minimum(a, b), np.maximum(a, b)
    by_sim = np.argsort(-sim, kind="stable")  # each pair once, credited to the cue that saw it most similar
    a, b, sim, cue = a[by_sim], b[by_sim], sim[by_sim], cue[by_sim]
    _, first = np.unique(a * len(ds) + b, return_index=True)
    first = np.sort(first)
    a, b, sim, cue = a[first], b[first], sim[first], cue[first]
    keep = a != b
    if scope is not Scope.LEAKAGE:
        same = ds.labels[a] == ds.labels[b]
        keep &= same if scope is Scope.WITHIN else ~same
    other, other_plain = leave_out if leave_out is not None else (_empty(scope), np.zeros(0, np.float32))
    if len(other):
        keep &= ~np.isin(a * len(ds) + b, other.a * len(ds) + other.b)
    a, b, sim, cue = a[keep], b[keep], sim[keep], cue[keep]
    plain = pixels.scores(a, b, cfg.score, (), on_progress, phase)
    score = plain.copy()
    if cfg.score.zooms and cfg.zoomed_per_query:  # a query's best pairs at the zooms: a re-crop scores low unzoomed
        joint = top_per_query(np.concatenate([a, other.a]), np.concatenate([plain, other_plain]), cfg.zoomed_per_query)
        best = joint[joint < len(a)]  # the ones of this part
        zoomed = pixels.scores(a[best], b[best], cfg.score, cfg.score.zooms, on_progress, f"{phase} at the zooms")
        score[best] = np.maximum(score[best], zoomed)
    order = np.lexsort((-sim, -score))
    return Candidates(scope, a[order], b[order], sim[order], score[order], cue[order]), plain[order]


def _empty(scope: Scope) -> Candidates:
    none = np.zeros(0, np.int64)
    return Candidates(scope, none, none, np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, "<U1"))


def _merged(first: Candidates, more: Candidates) -> Candidates:
    """Two lists of distinct pairs as one, best first."""
    both = Candidates(first.scope, np.concatenate([first.a, more.a]), np.concatenate([first.b, more.b]),
                      np.concatenate([first.cue_similarity, more.cue_similarity]),
                      np.concatenate([first.score, more.score]), np.concatenate([first.cue, more.cue]))
    return both.subset(np.lexsort((-both.cue_similarity, -both.score)))


def _cues_part(ds: Dataset, scope: Scope, cfg: CandidateConfig, on_progress: ProgressFn | None,
               pixels: Pixels | None = None) -> tuple[Candidates, NDArray[np.float32]]:
    pixels = pixels or LocalPixels(ds)
    return _scored(ds, scope, cfg, _cue_pairs(ds, scope, cfg, on_progress, pixels), on_progress, pixels)


def _network_part(ds: Dataset, scope: Scope, cfg: CandidateConfig, vectors: NDArray[np.float32],
                  cues: tuple[Candidates, NDArray[np.float32]], on_progress: ProgressFn | None,
                  pixels: Pixels | None = None) -> tuple[Candidates, NDArray[np.float32]]:
    return _scored(ds, scope, cfg, _network_pairs(ds, scope, cfg, vectors), on_progress, pixels or LocalPixels(ds),
                   cues, "network cue: pair score")


def find_candidates(ds: Dataset, scope: Scope | str = Scope.LEAKAGE, cfg: CandidateConfig = CandidateConfig(), *,
                    on_progress: ProgressFn | None = None, pixels: Pixels | None = None) -> Candidates:
    """Candidate pairs of one scope, best pair score first.

    leakage: each test image and its top_k nearest training images per view; within: training pairs
    of one class; cross: training pairs of two classes (the same photo under two labels). The pairs of
    the pixel views and the hashes come first; the network's embedding, when on disk, adds the pairs they
    did not find (so a network trained later adds its pairs without the others being scored again).
    """
    scope = parse(scope)
    cues = _cues_part(ds, scope, cfg, on_progress, pixels)
    emb = cached_embedding(ds) if cfg.network else None
    return cues[0] if emb is None else _merged(cues[0], _network_part(ds, scope, cfg, emb.vectors, cues,
                                                                      on_progress, pixels)[0])


def _arrays(part: tuple[Candidates, NDArray[np.float32]]) -> dict[str, NDArray[Any]]:
    c, plain = part
    return {"a": c.a, "b": c.b, "cue_similarity": c.cue_similarity, "score": c.score, "cue": c.cue, "plain": plain}


def _from_arrays(scope: Scope, r: dict[str, NDArray[Any]]) -> tuple[Candidates, NDArray[np.float32]]:
    return Candidates(scope, r["a"], r["b"], r["cue_similarity"], r["score"], r["cue"]), r["plain"]


def candidates_key(ds: Dataset, scope: Scope | str, cfg: CandidateConfig = CandidateConfig()) -> str:
    """The cache key of the pixel views' and hashes' candidates of one scope (the part every list has)."""
    params = {"scope": parse(scope), "cfg": replace(cfg, network=False), "version": CANDIDATES_VERSION}
    return cache.make_key("candidates", params, ds.fingerprint)


def network_key(ds: Dataset, scope: Scope | str, cfg: CandidateConfig = CandidateConfig()) -> str | None:
    """The cache key of the pairs the network's embedding adds to one scope, or None without a cached embedding."""
    network = cached_embedding_key(ds) if cfg.network else None
    if network is None:
        return None
    params = {"scope": parse(scope), "cfg": replace(cfg, network=False), "version": CANDIDATES_VERSION}
    return cache.make_key("candidates-network", {**params, "network": network}, ds.fingerprint)


def has_candidates(ds: Dataset, cfg: CandidateConfig = CandidateConfig()) -> bool:
    """Whether every scope's candidates are on disk (nothing is read or computed)."""
    return all(cache.peek_arrays(candidates_key(ds, s, cfg)) is not None for s in SCOPES)


def cached_candidates(ds: Dataset, scope: Scope | str = Scope.LEAKAGE, cfg: CandidateConfig = CandidateConfig(), *,
                      on_progress: ProgressFn | None = None, every_match: bool = False,
                      pixels: Pixels | None = None) -> Candidates:
    """find_candidates, cached in two parts by the dataset's fingerprint, the scope and the config: the pixel
    views' and hashes' pairs, and the pairs the network's embedding adds (keyed by that embedding as well),
    so that a network trained later costs only its own pairs.

    The leakage list holds each test image once, with its best training match, unless every_match."""
    scope = parse(scope)
    parts = candidate_parts(ds, scope, cfg, on_progress=on_progress, pixels=pixels)
    found = parts[0] if len(parts) == 1 else _merged(parts[0], parts[1])
    return found.best_per_query() if scope is Scope.LEAKAGE and not every_match else found


def candidate_parts(ds: Dataset, scope: Scope, cfg: CandidateConfig = CandidateConfig(), *,
                    on_progress: ProgressFn | None = None, pixels: Pixels | None = None) -> list[Candidates]:
    """The cached parts of one scope's list: the pixel views' and hashes' pairs (one key with the network cue on or
    off), then the network's own pairs where its embedding is on disk (its input takes part in the key)."""
    cues = _from_arrays(scope, cache.cached_arrays(candidates_key(ds, scope, cfg), lambda: _arrays(
        _cues_part(ds, scope, cfg, on_progress, pixels))))
    out = [cues[0]]
    key = network_key(ds, scope, cfg)
    emb = cached_embedding(ds) if key is not None else None
    if key is not None and emb is not None:
        out.append(_from_arrays(scope, cache.cached_arrays(key, lambda: _arrays(
            _network_part(ds, scope, cfg, emb.vectors, cues, on_progress, pixels))))[0])
    return out


def part_arrays(ds: Dataset, scope: Scope, cfg: CandidateConfig = CandidateConfig()) -> dict[str, dict[str, Any]]:
    """Each cached part of one scope as arrays by its cache key (for a Ray result folder to carry)."""
    keys = [candidates_key(ds, scope, cfg), network_key(ds, scope, cfg)]
    return {k: a for k in keys if k is not None and (a := cache.peek_arrays(k)) is not None}


def store_part(key: str, arrays: dict[str, Any]) -> None:
    """Store a part computed elsewhere (a Ray job) under its key, unless it is there already."""
    cache.cached_arrays(key, lambda: arrays)
