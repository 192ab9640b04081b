"""The candidates' fast paths agree with their references: the bf16 search with FAISS's exact one, the IVF index
finds planted near-duplicates, and the pair score split across processes with the same score in one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.features import pair_score, search
from core.features.pair_score import PairScoreConfig, score_pairs


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_bf16_search_equals_the_exact_float32_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    rng = np.random.default_rng(0)
    base, queries = _unit(rng.normal(size=(3000, 48))), _unit(rng.normal(size=(500, 48)))
    monkeypatch.setattr(search, "BF16_FROM", 0)
    monkeypatch.setattr(search, "_bf16_available", lambda: True)
    ids, sims = search.exact_topk(queries, base, 6)
    index = faiss.IndexFlatIP(48)
    index.add(base)
    ref_sims, ref_ids = index.search(queries, 6)
    assert np.array_equal(ids, ref_ids)  # random vectors: no ties
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)


def test_the_float32_search_equals_faiss_flat() -> None:
    rng = np.random.default_rng(3)
    base, queries = _unit(rng.normal(size=(2000, 48))), _unit(rng.normal(size=(300, 48)))
    ids, sims = search.exact_topk(queries, base, 5, chunk=128)  # below BF16_FROM: the float32 path
    ref_ids, ref_sims = search.faiss_flat_topk(queries, base, 5)
    assert np.array_equal(ids, ref_ids)  # random vectors: no ties
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)


def test_the_ivf_index_finds_planted_near_duplicates() -> None:
    rng = np.random.default_rng(1)
    base = _unit(rng.normal(size=(20_000, 32)))
    src = rng.choice(len(base), 300, replace=False)
    copies = _unit(base[src] + 0.05 * rng.normal(size=(300, 32)).astype(np.float32))  # cosine ~0.96
    ids, _ = search.ivf_topk(copies, base, 5)
    assert np.mean([s in row for s, row in zip(src, ids)]) >= 0.99
    assert search.ivf_cells(20_000) == 500 and search.ivf_cells(1_000_000) == 4000 and search.ivf_cells(100) == 2


def test_scores_split_across_processes_equal_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="r")
    a = rng.integers(0, 60, 400)
    b = rng.integers(0, 60, 400)
    cfg = PairScoreConfig()
    one = score_pairs(images, a, b, cfg, cfg.zooms[:2])
    monkeypatch.setattr(pair_score, "PARALLEL_MIN", 0)
    monkeypatch.setattr(pair_score, "PART", 64)
    seen: list[int] = []
    split = score_pairs(mapped, a, b, cfg, cfg.zooms[:2], workers=2, on_progress=lambda p: seen.append(p.done))
    np.testing.assert_allclose(split, one, atol=1e-6)
    assert seen[-1] == 400 and len(seen) > 3, "progress as the parts finish"
