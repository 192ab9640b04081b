"""The load test (`make load`): 1,000,000 hashes, and five concurrent app sessions on CIFAR-10."""

from __future__ import annotations

import resource
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import page

from tests.conftest import CIFAR, needs_cifar

pytestmark = pytest.mark.load


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_million_hash_search_finds_every_planted_pair() -> None:
    from core.data.synthetic import planted_codes
    from core.features.neighbors import find_pairs

    codes, planted = planted_codes(1_000_000, 10_000, 8, seed=0)
    pairs = find_pairs(codes, 8)
    found = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    assert all((min(a, b), max(a, b)) in found for a, b in planted.tolist())
    print(f"1M search: {len(pairs):,} pairs, peak {peak_mb():.0f} MB")


@needs_cifar
def test_five_concurrent_sessions_get_the_same_result() -> None:

    def session(k: int) -> tuple[str, ...]:
        at = page("views/near_duplicates.py", timeout=900)
        at.session_state["dataset"] = f"imagefolder:{CIFAR}"
        at.session_state["dup_method"] = "hash"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return tuple(str(m.value) for m in at.metric)

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(session, range(5)))
    assert len(set(results)) == 1, results
    print(f"5 sessions: {results[0]}, peak {peak_mb():.0f} MB")
