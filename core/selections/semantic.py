"""Semantic redundancy: per-class complete-linkage clustering on cosine distance, cut on demand.

Birodkar, Mobahi & Bengio (2019) cluster each class's embeddings agglomeratively (complete
linkage, so a cluster's diameter is at most the threshold) and keep one image per cluster.
Each class's dendrogram is built once (scipy) and cached; any threshold is then a cut of the
cached dendrograms (`fcluster`), and a keep fraction is read off the sorted merge heights, so a
slider move is a cut, not a recomputation. Classes above `max_exact` images would need
quadratic memory: they are first split by k-means (FAISS, else scikit-learn) into groups of about `group_size` and
linked inside each group (SemDeDup's pattern), and the result says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.cluster.hierarchy import fcluster, linkage

from core.data import cache
from core.data.datasets import TRAIN, Dataset
from core.data.types import ProgressFn, report
from core.selections.selection import Selection

log = logging.getLogger("redex.semantic")

POLICIES = ("mean", "random", "farthest")
DEFAULT_KEEP_FRACTION = 0.9  # the paper's headline cut: the 10% you do not need


@dataclass(frozen=True)
class SemanticConfig:
    """How dendrograms are built. Large classes go through k-means groups first."""

    linkage: str = "complete"
    metric: str = "cosine"
    max_exact: int = 20_000
    group_size: int = 5_000
    seed: int = 0


@dataclass(frozen=True, eq=False)
class Piece:
    """One dendrogram: dataset indices of its images (one class, or one k-means group of it) and Z."""

    label: int
    indices: NDArray[np.int64]
    Z: NDArray[np.float64] = field(repr=False)

    @property
    def heights(self) -> NDArray[np.float64]:
        return self.Z[:, 2] if len(self.Z) else np.zeros(0)


@dataclass(frozen=True, eq=False)
class Dendrograms:
    """Every class's dendrogram(s) over the pool; `routes` says which classes were split by k-means."""

    pieces: tuple[Piece, ...]
    n: int
    routes: dict[int, str]

    @property
    def pool(self) -> NDArray[np.bool_]:
        mask = np.zeros(self.n, bool)
        for p in self.pieces:
            mask[p.indices] = True
        return mask


def _link(x: NDArray[np.float32], cfg: SemanticConfig) -> NDArray[np.float64]:
    if len(x) < 2:
        return np.zeros((0, 4))
    z: NDArray[np.float64] = linkage(x.astype(np.float64), method=cfg.linkage, metric=cfg.metric)
    z[:, 2] = np.maximum(z[:, 2], 0.0)  # cosine distances of near-identical vectors can round below 0
    return z


def _kmeans_groups(x: NDArray[np.float32], cfg: SemanticConfig) -> tuple[NDArray[np.int64], str]:
    """k-means groups of about cfg.group_size, and which k-means made them.

    FAISS (spherical k-means, on the GPU when FAISS sees one), as SemDeDup does; scikit-learn's
    MiniBatchKMeans where FAISS is not installed.
    """
    k = int(np.ceil(len(x) / cfg.group_size))
    try:
        import faiss
    except ImportError:
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(k, random_state=cfg.seed, n_init=3, batch_size=4096).fit(x)
        return np.asarray(km.labels_, np.int64), "k-means (scikit-learn)"
    data = np.ascontiguousarray(x, np.float32)
    gpu = faiss.get_num_gpus() > 0
    km = faiss.Kmeans(data.shape[1], k, niter=20, nredo=3, seed=cfg.seed, spherical=True, gpu=gpu, verbose=False)
    km.train(data)
    _, assign = km.index.search(data, 1)
    return np.asarray(assign[:, 0], np.int64), f"FAISS k-means ({'GPU' if gpu else 'CPU'})"


def build_dendrograms(emb: NDArray[np.float32], labels: NDArray[np.int64], pool: NDArray[np.bool_],
                      cfg: SemanticConfig = SemanticConfig(), on_progress: ProgressFn | None = None) -> Dendrograms:
    """One dendrogram per class of the pool (several for a class above cfg.max_exact)."""
    pieces: list[Piece] = []
    routes: dict[int, str] = {}
    classes = np.unique(labels[pool])
    for k, c in enumerate(classes):
        idx = np.flatnonzero(pool & (labels == c))
        if len(idx) > cfg.max_exact:
            groups, how = _kmeans_groups(emb[idx], cfg)
            routes[int(c)] = f"{how} into {len(np.unique(groups))} groups, complete linkage inside each"
            for g in np.unique(groups):
                sub = idx[groups == g]
                pieces.append(Piece(int(c), sub, _link(emb[sub], cfg)))
        else:
            routes[int(c)] = "exact complete linkage"
            pieces.append(Piece(int(c), idx, _link(emb[idx], cfg)))
        report(on_progress, "dendrograms", k + 1, len(classes), f"class {c}")
    return Dendrograms(tuple(pieces), len(labels), routes)


def cached_dendrograms(ds: Dataset, emb: NDArray[np.float32], emb_key: str, cfg: SemanticConfig = SemanticConfig(),
                       on_progress: ProgressFn | None = None) -> Dendrograms:
    """build_dendrograms over ds's train split, cached by the embedding's key and cfg."""
    key = cache.make_key("dendro", cfg, ds.fingerprint, emb_key)

    def compute() -> dict[str, NDArray[Any]]:
        d = build_dendrograms(emb, ds.labels, ds.split == TRAIN, cfg, on_progress)
        out: dict[str, NDArray[Any]] = {"routes": np.array([f"{c}\t{r}" for c, r in d.routes.items()])}
        for k, p in enumerate(d.pieces):
            out[f"idx{k}"], out[f"Z{k}"], out[f"label{k}"] = p.indices, p.Z, np.array(p.label)
        return out

    a = cache.cached_arrays(key, compute)
    n_pieces = sum(1 for k in a if k.startswith("idx"))
    pieces = tuple(Piece(int(a[f"label{k}"]), a[f"idx{k}"], a[f"Z{k}"]) for k in range(n_pieces))
    routes = {int(c): r for c, r in (line.split("\t", 1) for line in a["routes"].tolist())}
    return Dendrograms(pieces, len(ds), routes)


def semantic_index(ds: Dataset, embed_cfg: Any = None, cfg: SemanticConfig = SemanticConfig(), *,
                   on_progress: ProgressFn | None = None) -> tuple[Any, Dendrograms]:
    """Embeddings and dendrograms of ds (both cached): everything a cut needs."""
    from core.features.embedding import EmbedConfig, embed

    emb = embed(ds, embed_cfg or EmbedConfig(), on_progress=on_progress)
    return emb, cached_dendrograms(ds, emb.vectors, emb.key, cfg, on_progress)


def cut(d: Dendrograms, threshold: float | dict[int, float]) -> NDArray[np.int64]:
    """Cluster id per dataset index (-1 outside the pool): clusters of cosine diameter <= threshold.

    A dict gives each class its own threshold (the per-class keep mode).
    """
    out = np.full(d.n, -1, np.int64)
    next_id = 0
    for p in d.pieces:
        t = threshold[p.label] if isinstance(threshold, dict) else threshold
        if len(p.indices) == 1:
            flat = np.ones(1, np.int64)
        else:
            flat = fcluster(p.Z, t, criterion="distance").astype(np.int64)
        out[p.indices] = flat - 1 + next_id
        next_id += int(flat.max())
    return out


def _threshold_for(heights: NDArray[np.float64], n: int, keep: int) -> float:
    """The smallest threshold that leaves at most `keep` clusters of `n` images (merges <= t count)."""
    merges = n - keep
    if merges <= 0:
        return -1.0  # below every height: nothing merges
    h = np.sort(heights)
    return float(h[min(merges, len(h)) - 1])


def threshold_for_fraction(d: Dendrograms, fraction: float, per_class: bool = False) -> float | dict[int, float]:
    """The cut that keeps `fraction` of the pool: one global threshold, or one per class (balance kept)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"keep fraction must be in (0, 1], got {fraction}")
    if not per_class:
        n = sum(len(p.indices) for p in d.pieces)
        heights = np.concatenate([p.heights for p in d.pieces]) if d.pieces else np.zeros(0)
        return _threshold_for(heights, n, int(round(fraction * n)))
    out: dict[int, float] = {}
    for c in sorted({p.label for p in d.pieces}):
        ps = [p for p in d.pieces if p.label == c]
        n = sum(len(p.indices) for p in ps)
        out[c] = _threshold_for(np.concatenate([p.heights for p in ps]), n, max(1, int(round(fraction * n))))
    return out


def representatives(emb: NDArray[np.float32], clusters: NDArray[np.int64], policy: str = "mean",
                    seed: int = 0) -> tuple[NDArray[np.bool_], NDArray[np.int64], NDArray[np.float64]]:
    """Keep one image per cluster: (keep mask, representative per image, cosine distance to it).

    "mean": the member closest to the cluster's mean embedding (the default); "farthest": the
    one farthest from it (SemDeDup's choice); "random": a seeded random member.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown representative policy {policy!r}: must be one of {', '.join(POLICIES)}")
    n = len(clusters)
    keep = np.ones(n, bool)
    rep = np.full(n, -1, np.int64)
    dist = np.full(n, np.nan)
    members = np.flatnonzero(clusters >= 0)
    if len(members) == 0:
        return keep, rep, dist
    order = members[np.argsort(clusters[members], kind="stable")]
    cl = clusters[order]
    starts = np.flatnonzero(np.r_[True, cl[1:] != cl[:-1]])
    e = emb[order].astype(np.float64)
    means = np.add.reduceat(e, starts, axis=0)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    size = np.diff(np.r_[starts, len(order)])
    which = np.repeat(np.arange(len(starts)), size)
    sim = np.einsum("ij,ij->i", e, means[which])
    if policy == "random":
        score = np.random.default_rng(seed).random(len(order))
    else:
        score = sim if policy == "mean" else -sim
    best = np.lexsort((order, -score, which))  # per cluster: highest score, then lowest index
    first = best[np.r_[True, which[best][1:] != which[best][:-1]]]
    chosen = order[first]
    rep_of = chosen[which]
    keep[order] = order == rep_of
    rep[order] = np.where(keep[order], -1, rep_of)
    d = 1.0 - np.einsum("ij,ij->i", e, emb[rep_of].astype(np.float64))
    dist[order] = np.where(keep[order], np.nan, np.maximum(d, 0.0))
    return keep, rep, dist


def semantic_selection(d: Dendrograms, emb: NDArray[np.float32], *, threshold: float | None = None,
                       keep_fraction: float | None = None, per_class: bool = False, policy: str = "mean",
                       seed: int = 0) -> Selection:
    """Kept/removed at a cosine threshold, or at the threshold that keeps `keep_fraction`."""
    if (threshold is None) == (keep_fraction is None):
        raise ValueError("give exactly one of threshold or keep_fraction")
    params: dict[str, Any] = {"policy": policy}
    if keep_fraction is not None:
        t = threshold_for_fraction(d, keep_fraction, per_class)
        params.update(keep_fraction=keep_fraction, per_class=per_class)
    else:
        assert threshold is not None
        if not 0.0 <= threshold <= 2.0:
            raise ValueError(f"cosine distance threshold must be in [0, 2], got {threshold}")
        t = threshold
    params["threshold"] = {str(k): round(v, 6) for k, v in t.items()} if isinstance(t, dict) else round(t, 6)
    clusters = cut(d, t)
    keep, rep, dist = representatives(emb, clusters, policy, seed)
    pool = d.pool
    sizes = np.bincount(clusters[pool], minlength=1) if pool.any() else np.zeros(0, np.int64)
    group = np.where(pool & (sizes[np.maximum(clusters, 0)] > 1), clusters, -1)
    return Selection("semantic", params, pool, keep | ~pool, group, rep, dist)
