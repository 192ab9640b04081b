"""Hamming search against imagededup, brute force and FAISS."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bench.common import dataset, row, section, timed


def _imagededup_pairs(hexes: list[str], radius: int) -> tuple[float, set[tuple[int, int]]]:
    from imagededup.methods import PHash

    ph = PHash(verbose=False)
    enc = {str(i): h for i, h in enumerate(hexes)}
    t, found = timed(lambda: ph.find_duplicates(encoding_map=enc, max_distance_threshold=radius, scores=True))
    pairs = {(min(int(a), int(b)), max(int(a), int(b))) for a, dups in found.items() for b, _ in dups}
    return t, pairs

@section
def search() -> list[dict[str, Any]]:
    """All pairs within Hamming 10 on CIFAR-10's pHashes, ours against imagededup on the same hashes."""
    from core.features.hashing import HashConfig, hash_images, to_hex
    from core.features.neighbors import find_pairs, plan_search, to_words

    ds = dataset()
    codes = hash_images(np.asarray(ds.images), HashConfig("phash", 8))
    radius = 10
    find_pairs(codes[:2000], radius)  # compile the kernels outside the timing
    ours_s, pairs = timed(lambda r=radius: find_pairs(codes, r), repeat=3)
    plan = plan_search(to_words(codes), radius, 64)
    base_s, ref = _imagededup_pairs(to_hex(codes), radius)
    ours = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    same = "same pairs" if ours == ref else f"DIFFERENT: {len(ours - ref)} only ours, {len(ref - ours)} only imagededup"
    return [row(f"search radius {radius}, {len(codes):,} pHashes", "imagededup find_duplicates (same hashes)",
                base_s, ours_s, notes=f"{len(ours):,} pairs, {same}; route {plan.route} with {len(plan.blocks)} blocks",
                command="find_pairs(codes, 10)")]

@section
def search_million() -> list[dict[str, Any]]:
    """1,000,000 random 64-bit hashes with planted near-duplicates, radius 8; baseline: chunked numpy brute force
    on a 50,000 slice, scaled quadratically (a full run would take hours)."""
    from core.data.synthetic import planted_codes
    from core.features.neighbors import brute_force_pairs, find_pairs

    codes, planted = planted_codes(1_000_000, 10_000, 8, seed=0)
    find_pairs(codes[:2000], 8)
    ours_s, pairs = timed(lambda: find_pairs(codes, 8))
    found = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    hit = sum((min(a, b), max(a, b)) in found for a, b in planted.tolist())
    slice_s, _ = timed(lambda: brute_force_pairs(codes[:50_000], 8))
    est = slice_s * (1_000_000 / 50_000) ** 2
    return [row("search radius 8, 1,000,000 synthetic hashes", "numpy brute force (50k slice x 400, quadratic)", est,
                ours_s, notes=f"{len(pairs):,} pairs; planted pairs found {hit:,} of {len(planted):,}",
                command="find_pairs(planted_codes(1_000_000, 10_000, 8), 8)")]

def _faiss_pairs(codes: np.ndarray, radius: int, n_queries: int | None = None) -> tuple[float, set[tuple[int, int]]]:
    """FAISS's exact binary index: range search of the first n_queries codes against all (pairs i < j)."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    nq = len(codes) if n_queries is None else n_queries

    def run() -> set[tuple[int, int]]:
        index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
        index.add(np.ascontiguousarray(codes))
        lims, _, found = index.range_search(np.ascontiguousarray(codes[:nq]), radius + 1)  # FAISS keeps d < radius
        q = np.repeat(np.arange(nq), np.diff(lims).astype(np.int64))
        keep = found > q
        return set(zip(q[keep].tolist(), found[keep].tolist()))

    return timed(run)

@section
def faiss_binary() -> list[dict[str, Any]]:
    """Our Hamming search against FAISS's exact IndexBinaryFlat range search: CIFAR-10's pHashes at radius 4
    and 8, and 1,000,000 synthetic hashes (FAISS on a 50,000-query slice, scaled linearly: its flat index
    compares every query with every code). FAISS's multi-hash index is approximate at these radii and
    is not used."""
    from core.data.synthetic import planted_codes
    from core.features.hashing import HashConfig, hash_images
    from core.features.neighbors import find_pairs

    rows = []
    codes = hash_images(np.asarray(dataset().images), HashConfig("phash", 8))
    find_pairs(codes[:2000], 8)  # compile the kernels outside the timing
    for radius in (4, 8):
        ours_s, pairs = timed(lambda r=radius: find_pairs(codes, r), repeat=3)
        base_s, ref = _faiss_pairs(codes, radius)
        ours = set(zip(pairs.i.tolist(), pairs.j.tolist()))
        same = "same pairs" if ours == ref else f"DIFFERENT: {len(ours - ref)} only ours, {len(ref - ours)} only FAISS"
        rows.append(row(f"search radius {radius}, {len(codes):,} pHashes", "FAISS IndexBinaryFlat range_search",
                        base_s, ours_s, notes=f"{len(ours):,} pairs, {same}", command=f"find_pairs(codes, {radius})"))
    million, _ = planted_codes(1_000_000, 10_000, 8, seed=0)
    for radius in (4, 8):
        ours_s, pairs = timed(lambda r=radius: find_pairs(million, r))
        slice_s, ref = _faiss_pairs(million, radius, 50_000)
        mine = {(int(i), int(j)) for i, j in zip(pairs.i, pairs.j) if i < 50_000}
        same = "same pairs on the slice" if mine == ref else f"DIFFERENT on the slice: {len(mine ^ ref)} pairs"
        rows.append(row(f"search radius {radius}, 1,000,000 synthetic hashes",
                        "FAISS IndexBinaryFlat range_search (50k queries x 20)", slice_s * 20, ours_s,
                        notes=f"{len(pairs):,} pairs; {same}",
                        command=f"find_pairs(planted_codes(1_000_000, 10_000, 8), {radius})"))
    return rows
