"""The candidates' fast paths agree with their references: the bf16 search with FAISS's exact one, the IVF index
finds planted near-duplicates, and the pair score split across processes with the same score in one."""

from __future__ import annotations

import numpy as np
import pytest

from core.features import search


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


@pytest.mark.parametrize("n,k", [(50_000, 6), (5_000, 22), (4_000, 6), (300, 6), (6_400, 22)])
def test_the_blocked_top_k_gives_torchs_values_and_the_same_indices_without_ties(n: int, k: int) -> None:
    import torch

    rng = np.random.default_rng(n)
    s = torch.from_numpy(rng.permutation(np.arange(50 * n, dtype=np.float32))[: 50 * n].reshape(50, n))  # no ties
    s[7] = torch.sort(s[7]).values  # the best k in the last (partial) block
    s[8, : n // 2] = -1.0 - torch.arange(n // 2)  # the best k all in the second half
    values, indices = search.blocked_topk(s, k)
    ref = s.topk(k, dim=1)
    assert torch.equal(values, ref.values) and torch.equal(indices, ref.indices)
    assert torch.equal(search.blocked_topk(s.to(torch.bfloat16), k)[0], s.to(torch.bfloat16).topk(k, dim=1).values)


def test_the_compiled_bf16_top_k_gives_torchs_values_on_both_signs_and_ties() -> None:
    import torch

    rng = np.random.default_rng(5)
    s = torch.from_numpy(rng.normal(size=(64, 9_000)).astype(np.float32)).to(torch.bfloat16)  # many equal values
    s[3] = -s[3].abs()  # every value negative: the order of a negative's bits is reversed
    s[4, :100] = 0.0
    s[4, 100:] = -0.0 - s[4, 100:].abs()  # the best values are the zeros, of either sign
    for k in (1, 6, 22):
        values, indices = search.blocked_topk(s, k)
        assert torch.equal(values, s.topk(k, dim=1).values)
        assert torch.equal(s.gather(1, indices), values) and len(set(indices[0].tolist())) == k


def test_the_bf16_pass_in_the_principal_directions_finds_the_exact_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    """Vectors whose energy lies in a few directions (as image cues' does) are compared in those in the bf16 pass,
    with the same neighbours as FAISS's exact search; random vectors keep every dimension."""
    rng = np.random.default_rng(7)
    base = _unit(rng.normal(size=(6000, 40)) @ rng.normal(size=(40, 192)) + 0.5 * rng.normal(size=(6000, 192)))
    queries = _unit(base[:400] + 0.3 * rng.normal(size=(400, 192)))
    basis = search.principal_basis(base)
    assert basis is not None and basis.shape[1] % 16 == 0 and basis.shape[1] <= 0.75 * 192
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-5)
    monkeypatch.setattr(search, "BF16_FROM", 0)
    monkeypatch.setattr(search, "_bf16_available", lambda: True)
    index = search.ExactIndex(base)
    ids, sims = index.search(queries, 6)
    assert index.basis is not None and np.array_equal(index.basis, basis)  # found once, kept for the next views
    ref_ids, ref_sims = search.faiss_flat_topk(queries, base, 6)
    assert np.array_equal(ids, ref_ids)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    assert search.principal_basis(_unit(rng.normal(size=(6000, 192)))) is None
    assert search.principal_basis(base[:300]) is None  # too few vectors to tell
