"""The near-duplicate result at the current settings, computed in one place for every page, the CLI,
Ray result folders and the report.

By the pair score: the candidates of each scope (core.selections.candidates) and the saved judgments
(a pair judged a duplicate always counts, one judged similar or different never, an unjudged one when
its score reaches the minimum); groups are the connected components of the accepted pairs. By a hash:
every pair within the radius (core.selections.duplicates). Either way: the groups of each scope, the
test images with a twin in the training split, and the training subset without its near-duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from core.data.datasets import Dataset
from core.data.judgments import JudgmentStore
from core.data.scope import SCOPES, Scope
from core.data.types import ProgressFn
from core.pipelines.settings import HASH, PAIR_SCORE, NearDupSettings, Settings
from core.selections.candidates import CandidateConfig, Candidates, cached_candidates
from core.selections.duplicates import (
    DuplicateIndex,
    build_index,
    clamp_radius,
    groups_at,
    hash_selection,
    leaked_test_images,
)
from core.selections.review import Judged, accepted, leaked, pair_selection
from core.selections.selection import Selection


@dataclass(frozen=True)
class ScopeFigures:
    """One scope at the current settings: pairs taken as near-duplicates, the groups they form, their images."""

    scope: Scope
    pairs: int
    groups: int
    images: int


@dataclass(frozen=True, eq=False)
class NearDuplicates:
    """What the settings find. A scope still being computed (in the app) is absent from `scopes`; `leaked` and
    `selection` are None until their scope is there."""

    settings: NearDupSettings  # resolved: method "pair score" or "hash"
    scopes: dict[Scope, ScopeFigures] = field(default_factory=dict)
    leaked: NDArray[np.int64] | None = None  # test images with a near-duplicate in the training split, sorted
    leaked_by_score: int | None = None  # the same count from the scores alone (pair score; None for hashes)
    selection: Selection | None = None  # the training split without its within-class near-duplicates
    judgments: Judged = field(default_factory=dict)  # the judgments that took part (pair score)
    candidates: dict[Scope, Candidates] = field(default_factory=dict)  # pair score: each scope's ranked list
    index: DuplicateIndex | None = None  # hash: the index (every pair within its largest radius)
    radius: int | None = None  # hash: the radius really cut (at most the index's largest)

    @property
    def judged(self) -> int:
        return len(self.judgments)

    def accepted(self, scope: Scope) -> Candidates | None:
        """Pair score: the pairs of `scope` taken as near-duplicates, best first (None while not computed)."""
        cands = self.candidates.get(scope)
        return None if cands is None else accepted(cands, self.judgments, self.settings.min_score)

    @property
    def judgments_changed_leakage(self) -> bool:
        """Whether the judgments changed the leakage figure (the page says so beside it)."""
        return self.leaked is not None and self.leaked_by_score is not None and self.leaked_by_score != len(
            self.leaked)


def _components(a: NDArray[np.int64], b: NDArray[np.int64]) -> tuple[int, int]:
    """(groups, images) of the graph with edges (a, b)."""
    if not len(a):
        return 0, 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    m = len(nodes)
    graph = coo_matrix((np.ones(len(a)), (inverse[: len(a)], inverse[len(a):])), shape=(m, m))
    n_comp, _ = connected_components(graph, directed=False)
    return int(n_comp), int(m)


def from_candidates(ds: Dataset, settings: NearDupSettings, found: Mapping[Scope, Candidates | None],
                    judged: Judged) -> NearDuplicates:
    """The pair-score result from the candidates at hand (a scope whose candidates are None is left out)."""
    scopes: dict[Scope, ScopeFigures] = {}
    for scope, cands in found.items():
        if cands is None:
            continue
        take = accepted(cands, judged, settings.min_score)
        groups, images = _components(take.a, take.b)
        scopes[scope] = ScopeFigures(scope, len(take), groups, images)
    leak, within = found.get(Scope.LEAKAGE), found.get(Scope.WITHIN)
    test_leaks = None if leak is None else leaked(ds, leak, judged, settings.min_score)
    by_score = None if leak is None else len(leaked(ds, leak, {}, settings.min_score))
    sel = None if within is None else pair_selection(ds, within, judged, settings.min_score)
    have = {scope: c for scope, c in found.items() if c is not None}
    return NearDuplicates(settings, scopes, test_leaks, by_score, sel, dict(judged), have)


def from_index(ds: Dataset, settings: NearDupSettings, index: DuplicateIndex) -> NearDuplicates:
    """The hash result from the hash index (every pair within the largest radius, cut at the settings' radius)."""
    radius = clamp_radius(settings.radius, index)
    scopes = {}
    for scope in SCOPES:
        g = groups_at(index, radius, scope, settings.keep_rule, ds.sizes)
        mask = (index.pairs.d <= radius) & (index.scope == scope.code)
        scopes[scope] = ScopeFigures(scope, int(mask.sum()), len(g), g.n_images)
    return NearDuplicates(settings, scopes, leaked_test_images(index, radius, ds.split), None,
                          hash_selection(ds, index, radius, settings.keep_rule), index=index, radius=radius)


def near_duplicates(ds: Dataset, settings: NearDupSettings, *, scopes: tuple[Scope, ...] = SCOPES,
                    judged: Judged | None = None, on_progress: ProgressFn | None = None) -> NearDuplicates:
    """The result at `settings` on `ds`, computing (or reading from the cache) whatever it needs.

    `judged` defaults to the judgments saved for this dataset (the Review page's store).
    """
    s = Settings(near_dup=settings).resolved(ds).near_dup
    if s.method == HASH:
        return from_index(ds, s, build_index(ds, s.hash, on_progress))
    assert s.method == PAIR_SCORE
    if judged is None:
        judged = JudgmentStore(ds.fingerprint).load()
    found = {scope: cached_candidates(ds, scope, CandidateConfig(), on_progress=on_progress) for scope in scopes}
    return from_candidates(ds, s, found, judged)
