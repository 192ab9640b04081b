"""Near-duplicate candidates by scope, the pair score against OpenCV, and precision-recall on planted pairs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CIFAR, ROOT, dataset, row, section, timed


@section
def candidates() -> list[dict[str, Any]]:
    """Near-duplicate candidates for the whole dataset, every scope (leakage: each test image against every
    training image; within a class; across classes), the pixel cue cached, the neighbours and the pair scores
    timed by stage; the pair score against OpenCV's matchTemplate over the same pairs; the re-cut after a
    minimum-score change; then the precision-recall of the pair score on planted CIFAR-10 copies (5
    transforms x 3 strengths) against each single cue and the pHash, with hard negatives (each original's
    closest other photo)."""
    from core.data.judgments import JudgmentStore
    from core.features.embedding import cached_embedding_key
    from core.features.pair_score import score_pairs
    from core.selections.candidates import CandidateConfig, cached_pixel_cue, find_candidates
    from core.selections.review import pair_selection

    ds = dataset()
    cfg = CandidateConfig()
    t0 = time.perf_counter()
    for side in cfg.sides:
        for mirrored in (False, True):
            cached_pixel_cue(ds, side, mirrored)  # the features: computed once and cached (here usually read back)
    cue_s = time.perf_counter() - t0
    rows, found = [], {}
    network = "the network's embedding on disk, its pairs included" if cached_embedding_key(ds) else \
        "no network embedding on disk"
    for scope in ("leakage", "within", "cross"):
        stages: dict[str, float] = {}
        last = [time.perf_counter()]

        def stage(p: Any, stages: dict[str, float] = stages, last: list[float] = last) -> None:
            now = time.perf_counter()  # time between progress reports, summed per phase
            stages[p.phase] = stages.get(p.phase, 0.0) + now - last[0]
            last[0] = now

        run_s, found[scope] = timed(lambda scope=scope, stage=stage: find_candidates(ds, scope, cfg, on_progress=stage))
        split = ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
        own = sum(v for k, v in stages.items() if k.startswith("network"))
        c = found[scope]
        rows.append(row(f"{scope} candidates, {len(ds):,} images (cue cached)", "-", None, run_s,
                        notes=f"{len(c):,} pairs scored, {len(np.unique(c.a)):,} queries; {network}"
                              + (f" (without them {run_s - own:.1f} s)" if own else "") + f"; by stage: "
                              f"{split}; reading the cached pixel cue {cue_s:.1f} s",
                        command=f"find_candidates(ds, {scope!r})"))
    _ROWS[:] = rows
    rows += _before(ds, cfg, found, network)
    rows += _cue_search(ds, cfg)
    total = sum(r["ours_s"] for r in _ROWS)
    rows.append(row("all three scopes, cues and scores", "-", None, total, notes="the sum of the three scope rows",
                    command="find_candidates for leakage, within and cross"))
    leak = found["leakage"]
    images = ds.pixels("bench")
    n = min(3000, len(leak))
    sample = np.random.default_rng(0).choice(len(leak), n, replace=False)
    a, b = leak.a[sample], leak.b[sample]
    cv_s, _ = timed(lambda: _opencv_pair_scores(np.asarray(images[a]), np.asarray(images[b]), cfg.score.scaled(
        int(images.shape[1]))))
    ours_s, _ = timed(lambda: score_pairs(images, a, b, cfg.score), repeat=2)
    rows.append(row(f"pair score of {n:,} candidate pairs (image and detail, both orientations, every shift)",
                    "OpenCV matchTemplate (TM_CCOEFF_NORMED) pair by pair", cv_s, ours_s,
                    notes=f"ours {n / ours_s:,.0f} pairs/s, OpenCV {n / cv_s:,.0f} pairs/s; OpenCV slides the "
                          "central crop over the other image (a fixed overlap), ours correlates every overlap",
                    command="score_pairs(images, a, b)"))
    within = found["within"]
    judged = JudgmentStore(ds.fingerprint).load()
    scores = iter([0.8, 0.9] * 10)
    cut_s, sel = timed(lambda: pair_selection(ds, within, judged, next(scores)), repeat=6)
    rows.append(row(f"re-cut after a minimum-score change, {len(within):,} within-class pairs", "-", None, cut_s,
                    notes=f"{len(sel.removed):,} removed at 0.9; {len(judged):,} judgments applied",
                    command="pair_selection(ds, within, judged, min_score)"))
    rows += _candidate_pr()
    return rows

BASELINE = "e1651e7"  # the last commit before the pair score's banks and compiled kernel, and the search's bf16 top-k


def _baseline(name: str, into: Path) -> Any:
    """core/features/<name>.py as it was at BASELINE, imported from a file in `into` (on sys.path, so the baseline's
    worker processes import it too)."""
    import importlib

    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE}:core/features/{name}.py"], check=True,
                          capture_output=True, text=True).stdout
    (into / f"baseline_{name}.py").write_text(text)
    if str(into) not in sys.path:
        sys.path.insert(0, str(into))
    return importlib.import_module(f"baseline_{name}")


def _before(ds: Any, cfg: Any, found: dict[str, Any], network: str) -> list[dict[str, Any]]:
    """Within and across classes again with the pair score and the exact search as they were at BASELINE (read from
    git), against the rows above: the time of each and whether the lists agree (the same pairs above the minimum
    score, every score within 1e-5)."""
    import tempfile

    from core.features import search
    from core.selections import candidates
    from core.selections.review import DEFAULT_MIN_SCORE

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            old_score, old_search = _baseline("pair_score", Path(tmp)), _baseline("search", Path(tmp))
        except (OSError, subprocess.CalledProcessError) as e:
            return [row("within and cross candidates: before and after", "-", None, 0.0,
                        notes=f"not measured: the baseline {BASELINE} could not be read from git ({e})")]
        saved = candidates.score_pairs, search.ExactIndex.search
        candidates.score_pairs = old_score.score_pairs
        search.ExactIndex.search = lambda self, queries, k: old_search.exact_topk(queries, self.base, k)
        try:
            for scope in ("within", "cross"):
                base_s, old = timed(lambda scope=scope: candidates.find_candidates(ds, scope, cfg))
                new = found[scope]
                score = {(a, b): s for a, b, s in zip(old.a.tolist(), old.b.tolist(), old.score.tolist())}
                common = [(k, s) for k, s in zip(zip(new.a.tolist(), new.b.tolist()), new.score.tolist())
                          if k in score]
                worst = max((abs(score[k] - s) for k, s in common), default=0.0)
                top_old = {k for k, s in score.items() if s >= DEFAULT_MIN_SCORE}
                top_new = {k for k, s in common if s >= DEFAULT_MIN_SCORE} | {
                    (a, b) for a, b, s in zip(new.a.tolist(), new.b.tolist(), new.score.tolist())
                    if s >= DEFAULT_MIN_SCORE and (a, b) not in score}
                agree = (f"the same {len(top_new):,} pairs at pair score >= {DEFAULT_MIN_SCORE}" if top_old == top_new
                         else f"DIFFERENT pairs at >= {DEFAULT_MIN_SCORE}: {len(top_old):,} before, "
                              f"{len(top_new):,} after")
                ours = next(r["ours_s"] for r in _ROWS if r["figure"].startswith(scope))
                rows.append(row(f"{scope} candidates: before and after (pair score: each image prepared once, "
                                f"compiled kernels; search: blocked, compiled top-k)",
                                f"the code at {BASELINE}", base_s, ours,
                                notes=f"{agree}; {len(old):,} pairs before, {len(new):,} after, {len(common):,} in "
                                      f"both, largest score difference {worst:.1e}; {network}; the rest (the pixel "
                                      f"cue of the query views among it) is today's code in both runs",
                                command=f"find_candidates(ds, {scope!r}) with core/features/pair_score.py and "
                                        f"search.py of {BASELINE}"))
        finally:
            candidates.score_pairs, search.ExactIndex.search = saved
    return rows


_ROWS: list[dict[str, Any]] = []  # this run's scope rows, for the before/after rows


def _cue_search(ds: Any, cfg: Any) -> list[dict[str, Any]]:
    """One view of the across-classes search (every training image's cue against every other's): ours, in the base's
    principal directions and in every dimension, against FAISS's exact flat index; how many queries get the same
    neighbours."""
    import faiss

    from core.data.datasets import TRAIN
    from core.features import search
    from core.selections.candidates import cached_pixel_cue

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    base = np.ascontiguousarray(cached_pixel_cue(ds, cfg.sides[0])[ds.split == TRAIN])
    k = cfg.top_k + 1
    faiss_s, (ref, _) = timed(lambda: search.faiss_flat_topk(base, base, k))
    index = search.ExactIndex(base)
    ours_s, (ids, _) = timed(lambda: index.search(base, k))
    basis = None if isinstance(index.basis, str) else index.basis  # the directions that search found
    full_s, (full, _) = timed(lambda: search.exact_topk(base, base, k, basis=None))

    def same(x: np.ndarray) -> str:
        return f"{np.mean(np.all(np.sort(x, 1) == np.sort(ref, 1), axis=1)):.3%}"

    dims = "every dimension" if basis is None else f"{basis.shape[1]} of {base.shape[1]} principal directions"
    route = "bf16 pass" if search.uses_bf16(len(base), len(base)) else "float32 (no native bf16 here)"
    return [row(f"cue search, one view, {len(base):,} training images against each other ({base.shape[1]}-d)",
                "FAISS IndexFlatIP (exact)", faiss_s, ours_s,
                notes=f"{route} in {dims}, the best {k + search.RERANK} re-ranked in float32: the same {k} neighbours "
                      f"as FAISS for {same(ids)} of the queries; in every dimension {full_s:.1f} s and {same(full)}; "
                      f"{search.CPU_ROWS} queries a chunk on a CPU",
                command="ExactIndex(base).search(base, 6)")]


def _opencv_pair_scores(a: np.ndarray, b: np.ndarray, scaled: tuple[int, float, float]) -> np.ndarray:
    """The pair score's work done with OpenCV, pair by pair: both images smoothed, the central crop of a (shift
    pixels off each side) slid over b and over its mirror image, for the image and for its detail (image minus
    Gaussian blur)."""
    import cv2

    s, sigma, smooth = scaled
    out = np.empty(len(a), np.float32)
    for k in range(len(a)):
        x = cv2.GaussianBlur(a[k].astype(np.float32), (0, 0), smooth, borderType=cv2.BORDER_REFLECT)
        y = cv2.GaussianBlur(b[k].astype(np.float32), (0, 0), smooth, borderType=cv2.BORDER_REFLECT)
        dx = x - cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        dy = y - cv2.GaussianBlur(y, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        best_image = best_detail = -1.0
        for yy, dd in ((y, dy), (np.ascontiguousarray(y[:, ::-1]), np.ascontiguousarray(dy[:, ::-1]))):
            best_image = max(best_image, float(cv2.matchTemplate(yy, x[s:-s, s:-s], cv2.TM_CCOEFF_NORMED).max()))
            best_detail = max(best_detail, float(cv2.matchTemplate(dd, dx[s:-s, s:-s], cv2.TM_CCOEFF_NORMED).max()))
        out[k] = (best_image + best_detail) / 2
    return out

def _candidate_pr() -> list[dict[str, Any]]:
    """Average precision and recall at 90% precision of each score, on planted copies and hard negatives."""
    from PIL import Image
    from sklearn.metrics import average_precision_score, precision_recall_curve

    sys.path.insert(0, str(ROOT / "tests"))
    from test_candidates import FAMILIES, STRENGTHS, _photos  # the planted families the tests use

    from core.features.hashing import HashConfig, hash_images
    from core.features.pair_score import similarity
    from core.selections.candidates import CandidateConfig, pixel_cue

    photos, source = _photos(360)
    originals = photos[:300]
    copies, family, truth = [], [], []
    for name, fn in FAMILIES.items():
        for strength in STRENGTHS:
            for i in range(len(originals)):
                copies.append(np.asarray(fn(Image.fromarray(originals[i]), strength)))
                family.append(f"{name}{strength}")
                truth.append(i)
    copies_a, truth_a = np.stack(copies), np.array(truth)
    if source == "cifar10":
        everything = sorted((CIFAR / "train").rglob("*.jpg"))
        used = set(everything[::97][:360])
        pool = np.stack([np.asarray(Image.open(f).convert("RGB"))
                         for f in [f for f in everything[1::13] if f not in used][:3000]])
    else:
        pool = photos[300:]
    from core.selections.candidates import nearest

    hard = pool[nearest(pixel_cue(originals), pixel_cue(pool), 1)[0][:, 0]]
    a = np.concatenate([copies_a, hard])
    b = np.concatenate([originals[truth_a], originals])
    y = np.r_[np.ones(len(copies_a)), np.zeros(len(hard))]
    cfg = CandidateConfig()
    scores = {"pair score (ours)": similarity(a, b, cfg.score, cfg.score.zooms)}
    for side in (16, 8):
        scores[f"pixels{side} cosine"] = np.maximum((pixel_cue(a, side) * pixel_cue(b, side)).sum(1),
                                                    (pixel_cue(a, side, True) * pixel_cue(b, side)).sum(1))
    ha, hb = hash_images(a, HashConfig("phash", 8)), hash_images(b, HashConfig("phash", 8))
    scores["pHash (64 - Hamming)"] = 64 - np.unpackbits(ha ^ hb, axis=1).sum(1)
    rows = []
    weight = np.where(y == 1, 0.5 / y.sum(), 0.5 / (1 - y).sum())  # copies and hard negatives weigh the same
    fam = np.array(family)
    curve = ["method,recall,precision"]
    for name, s in scores.items():
        prec, rec, _ = precision_recall_curve(y, s, sample_weight=weight)
        for level in np.linspace(0.02, 1.0, 50):  # the curve sampled at 50 recall levels (balanced precision)
            curve.append(f"{name},{level:.2f},{float(prec[rec >= level - 1e-12].max()):.4f}")
        pos, neg = s[: len(copies_a)], s[len(copies_a) :]
        at = {q: float((pos > np.percentile(neg, q)).mean()) for q in (95, 99)}
        per = {f: float((pos[fam == f] > np.percentile(neg, 95)).mean()) for f in sorted(set(family))}
        worst = min(per, key=per.__getitem__)
        ap = float(average_precision_score(y, s, sample_weight=weight))
        p_at = {q: float(prec[rec >= q].max()) for q in (0.9, 0.99)}
        notes = (f"balanced precision at recall 90% / 99%: {100 * p_at[0.9]:.1f}% / {100 * p_at[0.99]:.1f}%; "
                 f"recall at 5% / 1% false positives on the hard negatives: {100 * at[95]:.1f}% / "
                 f"{100 * at[99]:.1f}%; weakest family {worst} ({100 * per[worst]:.0f}% at 5%); {len(copies_a):,} "
                 f"copies of 300 photos (5 transforms x 3 strengths), {len(hard)} hard negatives")
        rows.append(row(f"planted pairs ({source}): {name}", "-", None, ap, unit="AP", notes=notes))
    (ROOT / "docs" / "candidates-pr.csv").write_text("\n".join(curve) + "\n")
    return rows
