"""Planted duplicates give exact precision and recall in every scope; keep rules are deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.datasets import TEST, TRAIN, load_image_folder
from core.data.scope import Scope
from core.features.hashing import HashConfig
from core.selections.duplicates import (
    DEFAULT_RADIUS,
    build_index,
    exact_groups,
    groups_at,
    hash_selection,
    leaked_test_images,
)


def _found_pairs(groups, ds, same_split: bool, same_class: bool) -> set[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Pairs of group members that belong to the scope (a group may also hold other pairs)."""
    out = set()
    for g in range(len(groups)):
        m = sorted(groups.group(g).tolist())
        out |= {(a, b) for k, a in enumerate(m) for b in m[k + 1:]
                if (ds.split[a] == ds.split[b]) == same_split
                and (not same_split or (ds.labels[a] == ds.labels[b]) == same_class)}
    return out


@pytest.fixture(scope="module")
def planted(planted_folder):  # type: ignore[no-untyped-def]
    root, truth = planted_folder
    ds = load_image_folder(root)
    index_of = {str(i): k for k, i in enumerate(ds.ids)}
    return ds, truth, index_of


@pytest.mark.parametrize("method", ["phash", "dhash"])
@pytest.mark.parametrize("scope,same_split,same_class", [
    (Scope.WITHIN, True, True), (Scope.CROSS, True, False), (Scope.LEAKAGE, False, False),
], ids=[Scope.WITHIN, "label-conflicts", "train-test-leakage"])
def test_precision_and_recall_are_one_at_default_radius(planted, method, scope, same_split, same_class):  # type: ignore[no-untyped-def]
    ds, truth, index_of = planted
    index = build_index(ds, HashConfig(method, 8))
    groups = groups_at(index, DEFAULT_RADIUS, scope)
    true = truth.true_pairs(index_of, same_split, same_class)
    found = _found_pairs(groups, ds, same_split, same_class)
    assert true, "the fixture plants pairs in every scope"
    assert found == true  # precision = recall = 1


def test_counts_and_leakage(planted):  # type: ignore[no-untyped-def]
    ds, truth, index_of = planted
    index = build_index(ds, HashConfig("phash", 8))
    leaked = leaked_test_images(index, DEFAULT_RADIUS, ds.split)
    assert sorted(str(ds.ids[i]) for i in leaked) == sorted(
        f"test/{c}/leak_b001.png" for c in ds.classes)
    sel = hash_selection(ds, index, DEFAULT_RADIUS)
    assert len(sel.removed) == 5 * 3  # one planted copy per transform per class
    assert len(sel.kept) + len(sel.removed) == int((ds.split == TRAIN).sum())
    assert not sel.pool[ds.split == TEST].any()
    # per class: the "exact" copy, and the test leak (the same deterministic JPEG as the "jpeg" copy)
    assert len(exact_groups(ds)) == 6


def test_nothing_found_just_below_distance(planted):  # type: ignore[no-untyped-def]
    ds, _, _ = planted
    index = build_index(ds, HashConfig("phash", 8))
    g0, g4 = groups_at(index, 0, Scope.WITHIN), groups_at(index, DEFAULT_RADIUS, Scope.WITHIN)
    assert g0.n_images < g4.n_images  # planted copies at distance 2..4 join only at the default radius


def _toy_index():  # type: ignore[no-untyped-def]
    from core.features.neighbors import find_pairs
    from core.selections.duplicates import DuplicateIndex, pair_scopes

    codes = np.zeros((4, 8), np.uint8)
    codes[1, 0] = 0b1  # 1 bit from 0
    codes[2, 0] = 0b11  # 2 bits from 0, 1 from 1
    codes[3, 0] = 0b111  # a chain: 3 from 0
    labels, split = np.zeros(4, np.int64), np.zeros(4, np.int8)
    pairs = find_pairs(codes, 12)
    return DuplicateIndex(HashConfig(), codes, pairs, pair_scopes(pairs, labels, split), 12)


def test_keep_policies_and_diameter() -> None:
    index = _toy_index()
    sizes = np.array([[8, 8], [8, 8], [32, 32], [8, 8]], np.int32)
    first = groups_at(index, 1, Scope.WITHIN, "first", sizes)
    assert len(first) == 1 and first.keep[0] == 0 and first.diameter[0] == 3  # the chain is visible
    assert groups_at(index, 1, Scope.WITHIN, "largest", sizes).keep[0] == 2
    medoid = groups_at(index, 1, Scope.WITHIN, "medoid", sizes)
    assert medoid.keep[0] == 1  # sum of distances 1+1+2 = 4, ties broken by the lowest index
    assert list(medoid.distances(0)) == [1, 0, 1, 2]


def test_bad_parameters() -> None:
    index = _toy_index()
    with pytest.raises(ValueError, match="scope"):
        groups_at(index, 1, "everything")
    with pytest.raises(ValueError, match="keep rule"):
        groups_at(index, 1, Scope.WITHIN, "newest")
    with pytest.raises(ValueError, match="radius"):
        groups_at(index, 13)
