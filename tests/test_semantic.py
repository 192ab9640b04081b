"""Semantic redundancy: planted clusters recovered, cuts equal scipy, fractions hit, CLI end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from scipy.cluster.hierarchy import fcluster, linkage

from core.selections.selection import random_like
from core.selections.semantic import (
    SemanticConfig,
    build_dendrograms,
    cut,
    representatives,
    semantic_selection,
)


def planted_embeddings(n_groups: int = 12, per_group: int = 6, dim: int = 16, spread: float = 0.02,
                       n_classes: int = 2, seed: int = 0):  # type: ignore[no-untyped-def]
    """Unit vectors in tight groups around random centres; returns vectors, labels, true group."""
    rng = np.random.default_rng(seed)
    vecs, labels, group = [], [], []
    for g in range(n_groups):
        centre = rng.normal(size=dim)
        centre /= np.linalg.norm(centre)
        for _ in range(per_group):
            v = centre + spread * rng.normal(size=dim) / np.sqrt(dim)
            vecs.append(v / np.linalg.norm(v))
            labels.append(g % n_classes)
            group.append(g)
    return np.array(vecs, np.float32), np.array(labels, np.int64), np.array(group)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs_a = {(x, y) for x in range(len(a)) for y in range(len(a)) if a[x] == a[y]}
    pairs_b = {(x, y) for x in range(len(b)) for y in range(len(b)) if b[x] == b[y]}
    return pairs_a == pairs_b


def test_planted_clusters_are_recovered_exactly() -> None:
    vecs, labels, group = planted_embeddings()
    d = build_dendrograms(vecs, labels, np.ones(len(labels), bool))
    intra = max(1 - (vecs[group == g] @ vecs[group == g].T).min() for g in np.unique(group))
    inter = min(1 - (vecs[group == g] @ vecs[group == h].T).max()
                for g in np.unique(group) for h in np.unique(group) if g != h and g % 2 == h % 2)
    assert intra < inter
    clusters = cut(d, (intra + inter) / 2)
    assert _same_partition(clusters, group)


def test_representative_is_closest_to_the_mean() -> None:
    vecs, labels, group = planted_embeddings(n_groups=4)
    keep, rep, dist = representatives(vecs, group.astype(np.int64), "mean")
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        mean = vecs[members].mean(0)
        best = members[np.argmax(vecs[members] @ (mean / np.linalg.norm(mean)))]
        assert keep[members].sum() == 1 and keep[best]
        others = members[members != best]
        assert (rep[others] == best).all()
        np.testing.assert_allclose(dist[others], 1 - vecs[others] @ vecs[best], atol=1e-6)
    far_keep, _, _ = representatives(vecs, group.astype(np.int64), "farthest")
    assert not (far_keep & keep).any()


@pytest.mark.parametrize("t", [0.0, 0.01, 0.05, 0.2, 0.6], ids=lambda t: f"t={t}")
def test_cached_cut_equals_scipy_from_scratch(t: float) -> None:
    vecs, labels, _ = planted_embeddings(n_groups=10, spread=0.3, seed=3)
    d = build_dendrograms(vecs, labels, np.ones(len(labels), bool))
    ours = cut(d, t)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        ref = fcluster(linkage(vecs[idx].astype(np.float64), "complete", "cosine"), t, "distance")
        assert _same_partition(ours[idx], ref)
    assert not np.intersect1d(ours[labels == 0], ours[labels == 1]).size  # ids never shared across classes


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("per_class", [False, True], ids=["global", "per-class"])
def test_keep_fraction_is_hit_within_one_image_per_class(fraction: float, per_class: bool) -> None:
    vecs, labels, _ = planted_embeddings(n_groups=20, per_group=10, spread=0.5, n_classes=4, seed=5)
    d = build_dendrograms(vecs, labels, np.ones(len(labels), bool))
    sel = semantic_selection(d, vecs, keep_fraction=fraction, per_class=per_class)
    n_classes = 4
    assert abs(len(sel.kept) - fraction * len(labels)) <= n_classes
    if per_class:
        kept = sel.per_class(labels, n_classes)["kept"]
        assert np.all(np.abs(kept - fraction * np.bincount(labels)) <= 1)


def test_large_classes_take_the_kmeans_route_and_say_so() -> None:
    vecs, labels, _ = planted_embeddings(n_groups=30, per_group=10, n_classes=1, seed=2)
    d = build_dendrograms(vecs, labels, np.ones(len(labels), bool), SemanticConfig(max_exact=100, group_size=60))
    assert d.routes[0] == "FAISS k-means (CPU) into 5 groups, complete linkage inside each"
    assert len(d.pieces) == 5 and sum(len(p.indices) for p in d.pieces) == 300
    sel = semantic_selection(d, vecs, keep_fraction=0.5)
    assert abs(len(sel.kept) - 150) <= 1


def test_faiss_and_scikit_learn_kmeans_find_the_same_planted_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four tight, far-apart blobs in one class: both k-means routes return exactly those four groups."""
    import sys

    from core.selections.semantic import _kmeans_groups

    rng = np.random.default_rng(4)
    centers = np.eye(16, dtype=np.float32)[:4]
    x = np.repeat(centers, 50, axis=0) + rng.normal(scale=0.02, size=(200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.repeat(np.arange(4), 50)
    cfg = SemanticConfig(group_size=50)
    faiss_groups, how = _kmeans_groups(x, cfg)
    assert how == "FAISS k-means (CPU)"
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if FAISS were not installed
    sk_groups, how_sk = _kmeans_groups(x, cfg)
    assert how_sk == "k-means (scikit-learn)"
    for groups in (faiss_groups, sk_groups):
        pairs = {(int(g), int(t)) for g, t in zip(groups, truth)}
        assert len(pairs) == 4 and len({g for g, _ in pairs}) == 4  # a bijection between groups and blobs


def test_random_arm_matches_size_and_class_counts() -> None:
    vecs, labels, _ = planted_embeddings(n_groups=20, per_group=10, spread=0.5, n_classes=4, seed=5)
    d = build_dendrograms(vecs, labels, np.ones(len(labels), bool))
    sel = semantic_selection(d, vecs, keep_fraction=0.7)
    rnd = random_like(sel, labels, seed=1)
    assert np.array_equal(rnd.per_class(labels, 4)["kept"], sel.per_class(labels, 4)["kept"])
    assert not np.array_equal(rnd.kept, sel.kept)


def test_bad_parameters() -> None:
    vecs, labels, _ = planted_embeddings(n_groups=3)
    d = build_dendrograms(vecs, labels, np.ones(len(labels), bool))
    for kwargs, words in [({"keep_fraction": 0.0}, "keep fraction"), ({"keep_fraction": 1.5}, "keep fraction"),
                          ({"threshold": 3.0}, "threshold"), ({}, "exactly one"),
                          ({"threshold": 0.1, "policy": "oldest"}, "policy")]:
        with pytest.raises(ValueError, match=words):
            semantic_selection(d, vecs, **kwargs)  # type: ignore[arg-type]


def run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", "--cache-dir", str(cache), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_cli_end_to_end_on_digits(tmp_path: Path) -> None:
    """embed (trained on the data), cluster, UMAP, export; the second run is served from cache."""
    cache = tmp_path / "cache"
    emb = ["--epochs", "3"]
    first = run("semantic", *emb, "--keep-fraction", "0.9", cache=cache)
    assert first.returncode == 0, first.stderr
    assert "semantic subset: keeps 1,212 of 1,347" in first.stdout  # round(0.9 * 1347) = 1212
    assert "(computed)" in first.stdout
    second = run("semantic", *emb, "--keep-fraction", "0.9", cache=cache)
    assert "embeddings + dendrograms" in second.stdout and "(from cache)" in second.stdout
    per_class = (lambda out: out.split("semantic subset")[1].split("re-cut")[0])
    assert per_class(second.stdout) == per_class(first.stdout)
    umap = run("umap", *emb, cache=cache)
    assert umap.returncode == 0 and "map: 1,797 points" in umap.stdout, umap.stderr
    out = tmp_path / "export"
    exp = run("export", "--by", "semantic", *emb, "--keep-fraction", "0.9", "--out", str(out), cache=cache)
    assert exp.returncode == 0, exp.stderr
    assert '"kept": 1212' in exp.stdout and (out / "manifest.csv").exists()
