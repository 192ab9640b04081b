"""The Hamming search finds exactly the pairs the numpy reference finds, by both routes."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.synthetic import planted_codes
from core.features.neighbors import Plan, _radii, _split_bits, brute_force_pairs, find_pairs, plan_search, to_words


def same(a, b) -> bool:  # type: ignore[no-untyped-def]
    return bool(np.array_equal(a.i, b.i) and np.array_equal(a.j, b.j) and np.array_equal(a.d, b.d))


@pytest.mark.parametrize("radius", [0, 1, 3, 6, 10, 14], ids=lambda r: f"radius{r}")
def test_every_route_matches_reference(radius: int) -> None:
    codes, _ = planted_codes(3000, 200, 8, seed=radius)
    codes[10] = codes[11]  # an exact duplicate
    ref = brute_force_pairs(codes, radius)
    assert same(find_pairs(codes, radius), ref)
    assert same(find_pairs(codes, radius, plan=Plan("brute", (), (), 0)), ref)
    for m in (3, 4, 5, 7):
        blocks = _split_bits(64, m)
        assert same(find_pairs(codes, radius, plan=Plan("mih", blocks, _radii(radius, m), 0)), ref), m


def test_planted_pairs_all_found_at_scale() -> None:
    codes, planted = planted_codes(100_000, 1000, 8, seed=1)
    pairs = find_pairs(codes, 8)
    found = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    assert all((min(a, b), max(a, b)) in found for a, b in planted.tolist())
    assert plan_search(to_words(codes), 8, 64).route == "mih"


def test_256_bit_codes() -> None:
    codes, _ = planted_codes(1500, 100, 30, bits=256, seed=2)
    for radius in (0, 20, 48):
        assert same(find_pairs(codes, radius), brute_force_pairs(codes, radius))


def test_radius_out_of_range() -> None:
    with pytest.raises(ValueError, match="between 0 and 64"):
        find_pairs(np.zeros((3, 8), np.uint8), 65)


def test_block_radii_satisfy_pigeonhole() -> None:
    for t in range(0, 20):
        for m in range(2, 12):
            r = _radii(t, m)
            assert sum(x + 1 for x in r) >= t + 1 and min(r) >= 0
