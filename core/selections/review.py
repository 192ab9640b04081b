"""What judged candidate pairs mean: the review queue, the list's precision so far, and the exports.

Pure functions over a Candidates list, a dataset and the judgments (core.data.judgments):
- `queue`: the candidates to show, best score first, filtered by class;
- `precision`: of the pairs judged among the top n of the list, the share judged a duplicate;
- `judged_rows`: every judgment with both images' ids, classes and splits (the CSV export);
- `cleaned_test_list`: the test images judged to duplicate a training image (drop or replace them);
- `training_removals`: within a class, one image per judged-duplicate group stays (the lowest
  index, so the choice is stable); a photo judged the same under two labels is a label conflict,
  and both copies go, since nothing says which label is right.
A pair judged "similar" or "different" is never merged: only duplicate judgments join groups.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from core.data.datasets import SPLIT_NAMES, TEST, TRAIN, Dataset
from core.data.judgments import LABELS, Judgment, JudgmentsError, JudgmentStore, pair_key
from core.selections.candidates import Candidates
from core.selections.selection import Selection, grouped

Judged = dict[tuple[int, int], Judgment]


def queue(ds: Dataset, cands: Candidates, classes: set[int] | None = None) -> NDArray[np.int64]:
    """Positions in `cands` (best first) whose query or match has one of `classes` (all when None)."""
    pos = np.arange(len(cands))
    if classes is None:
        return pos
    wanted = np.isin(ds.labels[cands.a], list(classes)) | np.isin(ds.labels[cands.b], list(classes))
    return pos[wanted]


def judgment_at(cands: Candidates, judged: Judged) -> list[Judgment | None]:
    """The judgment of each candidate pair, in list order (None where not judged)."""
    return [judged.get(pair_key(int(a), int(b))) for a, b in zip(cands.a, cands.b)]


@dataclass(frozen=True)
class Precision:
    top: int
    judged: int  # pairs judged among the top `top`
    duplicates: int  # of those, judged the same photo or a near-duplicate

    @property
    def value(self) -> float | None:
        return self.duplicates / self.judged if self.judged else None

    def __str__(self) -> str:
        if not self.judged:
            return f"top {self.top}: nothing judged yet"
        return (f"top {self.top}: {self.duplicates} of {self.judged} judged pairs are duplicates "
                f"({100 * self.duplicates / self.judged:.1f}%)"
                + ("" if self.judged == self.top else f"; {self.top - self.judged} not judged yet"))


def precision(cands: Candidates, judged: Judged, tops: tuple[int, ...] = (100, 300, 600)) -> list[Precision]:
    """Per n in tops: how many of the first n pairs are judged, and how many of those are duplicates."""
    marks = judgment_at(cands.subset(np.arange(min(max(tops, default=0), len(cands)))), judged)  # only the head
    out = []
    for top in tops:
        head = [m for m in marks[:top] if m is not None]
        out.append(Precision(min(top, len(cands)), len(head), sum(m.is_duplicate for m in head)))
    return out


def judged_rows(ds: Dataset, judged: Judged, cands: Candidates | None = None) -> list[dict[str, Any]]:
    """One row per judgment (in the order they were made), with the candidate's rank and score when listed."""
    where = {} if cands is None else {pair_key(int(a), int(b)): r for r, (a, b) in enumerate(zip(cands.a, cands.b))}
    rows = []
    for key, j in sorted(judged.items(), key=lambda kv: kv[1].at):
        r = where.get(key)
        rows.append({
            "image": str(ds.ids[j.a]), "image_split": SPLIT_NAMES[ds.split[j.a]],
            "image_class": ds.classes[ds.labels[j.a]],
            "match": str(ds.ids[j.b]), "match_split": SPLIT_NAMES[ds.split[j.b]],
            "match_class": ds.classes[ds.labels[j.b]],
            "judgment": j.label, "scope": j.scope,
            "rank": "" if r is None or cands is None else r + 1,
            "score": "" if r is None or cands is None else f"{cands.score[r]:.4f}",
            "cue": "" if r is None or cands is None else str(cands.cue[r]),
        })
    return rows


def _duplicates(judged: Judged) -> list[Judgment]:
    return [j for j in judged.values() if j.is_duplicate]


def cleaned_test_list(ds: Dataset, judged: Judged) -> NDArray[np.int64]:
    """Test images judged to be a duplicate of a training image, sorted."""
    out = {j.a if ds.split[j.a] == TEST else j.b for j in _duplicates(judged)
           if {int(ds.split[j.a]), int(ds.split[j.b])} == {TEST, TRAIN}}
    return np.array(sorted(out), np.int64)


@dataclass(frozen=True)
class Removals:
    duplicates: NDArray[np.int64]  # within a class: all but one image of each judged-duplicate group
    conflicts: NDArray[np.int64]  # the same photo under two labels: every copy

    @property
    def all(self) -> NDArray[np.int64]:
        return np.union1d(self.duplicates, self.conflicts)


def _groups(n: int, a: NDArray[np.int64], b: NDArray[np.int64]) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Connected groups of the pairs (a, b) over n images: (members, their group number, the lowest index of
    their group, the members that are not it). The lowest index stays, so the choice is stable."""
    _, comp = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    members = np.unique(np.concatenate([a, b]))  # sorted, so each group's first member is its lowest index
    comps, first = np.unique(comp[members], return_index=True)
    lowest = np.full(n, -1, np.int64)
    lowest[comps] = members[first]
    gone = members[lowest[comp[members]] != members]
    return members, np.searchsorted(comps, comp[members]), lowest[comp], gone


def training_removals(ds: Dataset, judged: Judged) -> Removals:
    pairs = [(j.a, j.b) for j in _duplicates(judged) if ds.split[j.a] == TRAIN and ds.split[j.b] == TRAIN]
    conflicts = sorted({i for a, b in pairs if ds.labels[a] != ds.labels[b] for i in (a, b)})
    within = [(a, b) for a, b in pairs if ds.labels[a] == ds.labels[b]]
    if not within:
        return Removals(np.zeros(0, np.int64), np.array(conflicts, np.int64))
    a, b = np.array(within, np.int64).T
    return Removals(_groups(len(ds), a, b)[3], np.array(conflicts, np.int64))


def read_judgments(path: str | Path, ds: Dataset) -> Judged:
    """Judgments from a store file (.json) or from a judged-pairs CSV this product exported (columns
    image, match, judgment; ids are matched to ds)."""
    p = Path(path)
    if p.suffix.lower() != ".csv":
        return JudgmentStore.from_file(p).load()
    where = {str(i): n for n, i in enumerate(ds.ids)}
    out: Judged = {}
    with open(p, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                a, b, label = where[row["image"]], where[row["match"]], row["judgment"]
            except KeyError as exc:
                raise JudgmentsError(f"{p}, line {line}: {exc} is not a column or an image of this dataset") from exc
            if label not in LABELS:
                raise JudgmentsError(f"{p}, line {line}: unknown judgment {label!r}")
            out[pair_key(a, b)] = Judgment(a, b, label, row.get("scope", ""), float(line))
    return out


DEFAULT_MIN_SCORE = 0.9  # of the 511 CIFAR-10 test images whose best pair reaches it, 498 (97%) are judged duplicates


def accepted(cands: Candidates, judged: Judged, min_score: float = DEFAULT_MIN_SCORE) -> Candidates:
    """The pairs taken as duplicates: a duplicate judgment always, a judgment of 'similar' or 'different'
    never, and an unjudged pair when its score is at least min_score."""
    take = cands.score >= min_score
    if judged:  # vectorised: a slider move on 200,000 pairs stays well under a second
        lo, hi = np.minimum(cands.a, cands.b), np.maximum(cands.a, cands.b)
        n = int(max(int(hi.max(initial=0)), max(max(k) for k in judged))) + 1
        keys = lo * n + hi
        jk = np.array([k[0] * n + k[1] for k in judged], np.int64)
        dup = np.array([j.is_duplicate for j in judged.values()], bool)
        order = np.argsort(jk)
        pos = np.clip(np.searchsorted(jk[order], keys), 0, len(jk) - 1)
        hit = jk[order][pos] == keys
        take = np.where(hit, dup[order][pos], take)
    return cands.subset(np.flatnonzero(take))


def pair_selection(ds: Dataset, within: Candidates, judged: Judged, min_score: float = DEFAULT_MIN_SCORE) -> Selection:
    """Within-class deduplication of the training split by accepted candidate pairs, and by every pair judged a
    duplicate whether or not it is in the list (as `leaked` counts them): each connected group keeps its lowest
    index (a stable choice), the others are removed with their best pair score (1 for a judged pair not listed)."""
    pairs = accepted(within, judged, min_score)
    listed = set(zip(np.minimum(pairs.a, pairs.b).tolist(), np.maximum(pairs.a, pairs.b).tolist()))
    extra = [pair_key(j.a, j.b) for j in _duplicates(judged) if pair_key(j.a, j.b) not in listed]
    ja, jb = (np.array(x, np.int64) for x in zip(*extra)) if extra else (np.zeros(0, np.int64),) * 2
    a, b = np.concatenate([pairs.a, ja]), np.concatenate([pairs.b, jb])
    score = np.concatenate([pairs.score.astype(np.float64), np.ones(len(ja))])
    pool = ds.split == TRAIN
    n = len(ds)
    group = np.full(n, -1, np.int64)
    rep = np.full(n, -1, np.int64)
    dist = np.full(n, np.nan)
    ok = pool[a] & pool[b] & (ds.labels[a] == ds.labels[b])
    a, b, score = a[ok], b[ok], score[ok]
    if len(a):
        members, numbers, lowest, gone = _groups(n, a, b)
        best = np.full(n, -1.0)
        np.maximum.at(best, a, score)
        np.maximum.at(best, b, score)
        group[members] = numbers
        rep[gone] = lowest[gone]
        dist[gone] = 1.0 - best[gone]  # 1 - the best pair score of the image: small means surely the same photo
    return grouped("pairs", {"min_score": min_score, "judged": len(judged)}, pool, group, rep, dist)


def leaked(ds: Dataset, leakage: Candidates, judged: Judged, min_score: float = DEFAULT_MIN_SCORE) -> NDArray[np.int64]:
    """Test images with an accepted duplicate in the training split, sorted: the list's accepted pairs, and every
    test image judged a duplicate of a training image, whether or not that pair is in the list (the list keeps a
    test image's best match, which may be another copy than the one judged, or come from an older list)."""
    pairs = accepted(leakage, judged, min_score)
    listed = np.concatenate([pairs.a[ds.split[pairs.a] == TEST], pairs.b[ds.split[pairs.b] == TEST]])
    return np.union1d(listed, cleaned_test_list(ds, judged)).astype(np.int64)
