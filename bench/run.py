"""`make bench`: every figure as a ratio against a baseline measured in the same run, on the same data.

Each section runs in its own process (so its peak memory is its own) and prints JSON rows;
the parent writes docs/BENCHMARKS.md. CIFAR-10 comes from ../shared/data/cifar10-jpg; without
it the sections fall back to digits and the report says so.

    python -m bench.run                # all sections
    python -m bench.run --only hashing # one section
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg"
SPEC = f"imagefolder:{CIFAR}" if (CIFAR / "train").is_dir() else "digits"
SECTIONS: dict[str, Callable[[], list[dict[str, Any]]]] = {}


def section(fn: Callable[[], list[dict[str, Any]]]) -> Callable[[], list[dict[str, Any]]]:
    SECTIONS[fn.__name__] = fn
    return fn


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def row(figure: str, baseline: str, base_s: float | None, ours_s: float, unit: str = "s", notes: str = "",
        command: str = "") -> dict[str, Any]:
    return {"figure": figure, "baseline": baseline, "baseline_s": base_s, "ours_s": ours_s, "unit": unit,
            "ratio": (base_s / ours_s) if base_s and ours_s else None, "notes": notes, "command": command}


def dataset():  # type: ignore[no-untyped-def]
    from core.datasets import load_dataset

    return load_dataset(SPEC)


@section
def hashing() -> list[dict[str, Any]]:
    """Throughput per method against imagehash called per image, and bit agreement on a sample."""
    from core.hashing import METHODS, HashConfig, hash_images, reference_hash, to_hex

    ds = dataset()
    images = np.asarray(ds.images)
    sample = images[np.random.default_rng(0).choice(len(images), min(10_000, len(images)), replace=False)]
    rows = []
    hash_images(images[:256], HashConfig("phash", 8))  # warm-up (imports, thread pool)
    for method in METHODS:
        cfg = HashConfig(method, 8)
        ref_s, ref = timed(lambda cfg=cfg: [reference_hash(x, cfg) for x in sample])
        ours_s, codes = timed(lambda cfg=cfg: hash_images(images, cfg), repeat=2)
        ours_sample = to_hex(hash_images(sample, cfg))
        agree = sum(a == b for a, b in zip(ours_sample, ref))
        per_ref, per_ours = ref_s / len(sample), ours_s / len(images)
        rows.append(row(f"hash {method}8, per image ({len(images):,} images)", "imagehash per image", per_ref,
                        per_ours, "s/image", f"identical bits on {agree:,} of {len(sample):,} sampled images "
                        f"({100 * agree / len(sample):.2f}%); ours {len(images) / ours_s:,.0f} images/s",
                        "hash_images(images, HashConfig(method, 8))"))
    return rows


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
    from core.hashing import HashConfig, hash_images, to_hex
    from core.neighbors import find_pairs, plan_search, to_words

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
    from core.neighbors import brute_force_pairs, find_pairs
    from core.synthetic import planted_codes

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
    from core.hashing import HashConfig, hash_images
    from core.neighbors import find_pairs
    from core.synthetic import planted_codes

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


@section
def candidates() -> list[dict[str, Any]]:
    """Near-duplicate candidates for the whole dataset, every scope (leakage: each test image against every
    training image; within a class; across classes), the pixel cue cached, the neighbours and the pair scores
    timed by stage; the pair score against OpenCV's matchTemplate over the same pairs; the re-cut after a
    minimum-score change; then the precision-recall of the pair score on planted CIFAR-10 copies (5
    transforms x 3 strengths) against each single cue and the pHash, with hard negatives (each original's
    closest other photo)."""
    from core.candidates import CandidateConfig, cached_pixel_cue, find_candidates
    from core.embedding import cached_embedding_key
    from core.judgments import JudgmentStore
    from core.pair_score import score_pairs
    from core.review import pair_selection

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
    total = sum(r["ours_s"] for r in rows)
    rows.append(row("all three scopes, cues and scores", "-", None, total, notes="the sum of the rows above",
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

    from core.candidates import CandidateConfig, pixel_cue
    from core.hashing import HashConfig, hash_images
    from core.pair_score import similarity

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
    from core.candidates import nearest

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


@section
def end_to_end() -> list[dict[str, Any]]:
    """From decoded arrays to duplicate groups (pHash, radius 10): ours against imagededup on 20,000 images."""
    from imagededup.methods import PHash

    from core.duplicates import DuplicateIndex, groups_at, pair_scopes
    from core.hashing import HashConfig, hash_images
    from core.neighbors import find_pairs

    ds = dataset()
    n = min(20_000, len(ds))
    images = np.asarray(ds.images[:n])
    labels, split = ds.labels[:n], ds.split[:n]

    def ours() -> int:
        codes = hash_images(images, HashConfig("phash", 8))
        p = find_pairs(codes, 10)
        index = DuplicateIndex(HashConfig("phash", 8), codes, p, pair_scopes(p, labels, split), 10)
        return len(groups_at(index, 10, "within-class"))

    def theirs() -> int:
        ph = PHash(verbose=False)
        enc = {str(i): ph.encode_image(image_array=x) for i, x in enumerate(images)}
        return len(ph.find_duplicates(encoding_map=enc, max_distance_threshold=10))

    ours()
    ours_s, _ = timed(ours)
    base_s, _ = timed(theirs)
    return [row(f"end to end, arrays to groups, {n:,} images", "imagededup encode_image + find_duplicates",
                base_s, ours_s, notes="imagededup's pHash bits differ from imagehash's (see docs); times only")]


@section
def semantic() -> list[dict[str, Any]]:
    """Dendrograms for every class vs scikit-learn's AgglomerativeClustering; one re-cut; keep-fraction search."""
    from sklearn.cluster import AgglomerativeClustering

    from core.datasets import TRAIN
    from core.semantic import build_dendrograms, cut, semantic_index, semantic_selection, threshold_for_fraction

    ds = dataset()
    emb, _ = semantic_index(ds)
    pool = ds.split == TRAIN
    ours_s, d = timed(lambda: build_dendrograms(emb.vectors, ds.labels, pool))
    t = float(threshold_for_fraction(d, 0.9))  # type: ignore[arg-type]
    ours_cut = cut(d, t)
    same = True
    base_s = 0.0
    for c in np.unique(ds.labels[pool]):
        idx = np.flatnonzero(pool & (ds.labels == c))
        # scikit-learn merges strictly below its threshold, fcluster at or below: the next float up
        model = AgglomerativeClustering(n_clusters=None, linkage="complete", metric="cosine",
                                        distance_threshold=float(np.nextafter(t, 2.0)))
        s, lab = timed(lambda model=model, idx=idx: model.fit_predict(emb.vectors[idx].astype(np.float64)))
        base_s += s
        a, b = ours_cut[idx], lab
        same &= len(np.unique(a)) == len(np.unique(b)) and len(np.unique(a * 100_000 + b)) == len(np.unique(a))
    recut_s, _ = timed(lambda: semantic_selection(d, emb.vectors, threshold=t * 1.5), repeat=20)
    frac_s, _ = timed(lambda: semantic_selection(d, emb.vectors, keep_fraction=0.8), repeat=20)
    full_recut = ours_s + recut_s
    n = int(pool.sum())
    return [
        row(f"dendrograms, all classes ({n:,} train images)", "scikit-learn AgglomerativeClustering per class",
            base_s, ours_s, notes=f"partitions at the 0.9-keep threshold {'identical' if same else 'DIFFER'}"),
        row("one re-cut of all classes (slider move)", "rebuilding the dendrograms and cutting", full_recut, recut_s,
            notes="includes choosing representatives"),
        row("keep-fraction search + cut (keep 0.8)", "rebuilding the dendrograms and cutting", full_recut, frac_s),
    ]


@section
def embedding() -> list[dict[str, Any]]:
    """Inference throughput of the trained embedding network on the CPU: channels_last (ours) vs NCHW."""
    import torch

    from core.embedding import EmbedConfig, trained_classifier
    from core.training import to_tensor

    ds = dataset()
    model, info = trained_classifier(ds, EmbedConfig())
    n = min(10_000, len(ds))
    x = to_tensor(np.asarray(ds.images[:n]), "cpu").float()
    mean, std = torch.from_numpy(info["mean"]), torch.from_numpy(info["std"])
    model.eval()

    def run(channels_last: bool) -> None:
        m = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        with torch.inference_mode():
            for lo in range(0, n, 1024):
                xb = (x[lo : lo + 1024] - mean) / std
                m.features(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb.contiguous())

    run(True)
    base_s, _ = timed(lambda: run(False), repeat=2)
    ours_s, _ = timed(lambda: run(True), repeat=2)
    return [row(f"embedding inference, {info['arch']}, {n:,} images (CPU)", "same network, NCHW", base_s, ours_s,
                notes=f"ours {n / ours_s:,.0f} images/s on {torch.get_num_threads()} threads; "
                f"network: {info['epochs']} epochs, test accuracy {100 * info['test_accuracy']:.1f}%, "
                f"trained in {info['train_seconds']:.0f} s")]


@section
def umap_map() -> list[dict[str, Any]]:
    """UMAP of the embeddings: the default route against the other one (fit all vs fit 50,000 + transform)."""
    from core.projection import UmapConfig, project
    from core.semantic import semantic_index

    ds = dataset()
    emb, _ = semantic_index(ds)
    sampled = UmapConfig(max_fit=min(50_000, len(emb.vectors) - 1000))
    everything = UmapConfig(max_fit=len(emb.vectors) + 1)
    project(emb.vectors[:3000], UmapConfig(max_fit=2000))  # numba start-up (fit and transform) outside the timing
    # alternate the two routes and keep each one's best: whichever runs second otherwise wins on warm-up
    runs: dict[str, list[float]] = {"all": [], "sampled": []}
    for _ in range(2):
        for name, cfg in (("all", everything), ("sampled", sampled)):
            t, res = timed(lambda cfg=cfg: project(emb.vectors, cfg))
            runs[name].append(t)
            if name == "sampled":
                q = res
    ours_cfg = UmapConfig()
    ours_name = "all" if len(emb.vectors) <= ours_cfg.max_fit else "sampled"
    other = "sampled" if ours_name == "all" else "all"
    ours_s, base_s = min(runs[ours_name]), min(runs[other])
    p = q if ours_name == "sampled" else None
    base = f"fit on {q.fitted_on:,}, transform the rest" if other == "sampled" else "fit on every point"
    ours_desc = f"fitted on {q.fitted_on:,}" if p is not None else "fitted on every point"
    return [row(f"UMAP of {len(emb.vectors):,} embeddings", base, base_s, ours_s,
                notes=f"ours {ours_desc} (UmapConfig.max_fit={ours_cfg.max_fit:,}); best of 2 alternating runs each; "
                f"all: {', '.join(f'{t:.1f}' for t in runs['all'])} s, sampled: "
                f"{', '.join(f'{t:.1f}' for t in runs['sampled'])} s")]


@section
def app_latency() -> list[dict[str, Any]]:
    """AppTest: slider change to finished rerun (warm caches), against a run that recomputes the index."""
    import tempfile

    from streamlit.testing.v1 import AppTest

    from core import cache

    rows = []
    warm_dir = os.environ.get(cache.ENV_VAR)
    for page, key, values, label in (("views/near_duplicates.py", "radius", (4, 8), "near-duplicate page"),
                                     ("views/semantic.py", "keep_fraction", (0.9, 0.8), "semantic page")):
        at = AppTest.from_file(str(ROOT / page), default_timeout=900)
        at.session_state["dataset"] = SPEC
        at.session_state["dup_method"] = "hash"  # the radius slider's method
        if page.endswith("near_duplicates.py"):  # cold: empty disk cache, nothing in memory (decode+hash+search)
            os.environ[cache.ENV_VAR] = tempfile.mkdtemp()
        cold_s, _ = timed(at.run)
        if warm_dir is None:
            os.environ.pop(cache.ENV_VAR, None)
        else:
            os.environ[cache.ENV_VAR] = warm_dir
        times = []
        for k in range(6):
            t0 = time.perf_counter()
            at.slider(key=key).set_value(values[k % 2]).run()
            times.append(time.perf_counter() - t0)
        assert not at.exception, [e.value for e in at.exception]
        warm = float(np.median(times))
        first = "first render, empty disk cache" if "near" in label else "first render, disk cache warm"
        rows.append(row(f"{label}: slider change to finished rerun", first, cold_s, warm,
                        notes=f"median of 6 moves; {first}: {cold_s:.1f} s"))
    return rows


@section
def scale() -> list[dict[str, Any]]:
    """Ray: hashing and embedding CIFAR-10 from the JPEGs with 1 and 2 workers against the single-machine
    path, and the exact search at radius 4 on 5,000,000 synthetic hashes with 1% planted near-duplicates
    (time, every worker's peak memory, planted pairs found)."""
    import shutil
    import tempfile

    import ray

    from core import cache
    from core.datasets import load_image_folder
    from core.hashing import HashConfig, hash_images
    from core.ray_runtime import connect
    from core.scale import hash_source, search_ray
    from core.synthetic import planted_codes

    rows = []
    if SPEC != "digits":
        tmp = Path(tempfile.mkdtemp())
        os.environ[cache.ENV_VAR] = str(tmp / "cache")
        single_s, _ = timed(lambda: hash_images(np.asarray(load_image_folder(CIFAR).images), HashConfig()))
        for workers in (1, 2):
            connect(None, num_cpus=workers)
            out = tmp / f"ray{workers}"
            t, hashed = timed(lambda out=out: hash_source(SPEC, out, HashConfig()))
            ray.shutdown()
            rows.append(row(f"Ray hashing from JPEG, {len(hashed.ids):,} images, {workers} worker(s)",
                            "single machine: decode (all cores) + hash", single_s, t,
                            notes=f"{len(hashed.ids) / t:,.0f} images/s; ratio < 1 is Ray's overhead"))
        rows += _scale_embedding(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    connect(None)
    codes, planted = planted_codes(5_000_000, 50_000, 4, seed=0)
    t, run = timed(lambda: search_ray(codes, 4, pieces=8))
    pairs = run.pairs
    found = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    hit = sum((min(a, b), max(a, b)) in found for a, b in planted.tolist())
    ray.shutdown()
    peaks = ", ".join(f"{p / 2**20:,.0f}" for p in sorted(run.worker_peak.values()))
    rows.append(row("Ray exact search radius 4, 5,000,000 hashes", "–", None, t,
                    notes=f"{len(pairs):,} pairs; planted found {hit:,} of {len(planted):,}; peak memory per "
                          f"worker (MB, getrusage in each of {len(run.worker_peak)} workers): {peaks}"))
    return rows


def _scale_embedding(tmp: Path) -> list[dict[str, Any]]:
    """Embedding CIFAR-10 on Ray actors (decode + ResNet-20 features) with 1 and 2 workers, against the
    single-machine decode + features on all cores. The network's weights are its seeded initial ones:
    throughput does not depend on them, and training it (~8 min here) is not what is measured."""
    import ray
    import torch

    from core import cache
    from core.datasets import load_image_folder
    from core.device import pick_device
    from core.models import build_model
    from core.ray_runtime import connect
    from core.scale import embed_source
    from core.training import predict_features, to_tensor

    torch.manual_seed(0)
    model = build_model("resnet20", 3, 10, 32)
    info = {"arch": "resnet20", "mean": np.full((1, 3, 1, 1), 120.0, np.float32),
            "std": np.full((1, 3, 1, 1), 64.0, np.float32)}

    def single() -> int:
        os.environ[cache.ENV_VAR] = str(tmp / "cache-embed")  # a cold decode, as on the Ray side
        images = np.asarray(load_image_folder(CIFAR).images)
        device = pick_device()
        mean, std = (torch.from_numpy(info[k]).to(device) for k in ("mean", "std"))
        m = model.to(device).to(memory_format=torch.channels_last)
        feats = [predict_features(m, to_tensor(images[lo: lo + 8192], device), mean, std)
                 for lo in range(0, len(images), 8192)]
        return sum(len(f) for f in feats)

    single_s, n = timed(single)
    rows = []
    for workers in (1, 2):
        connect(None, num_cpus=workers)
        out = tmp / f"embed{workers}"
        t, vectors = timed(lambda out=out, w=workers: embed_source(SPEC, out, (model, info), actors=w))
        ray.shutdown()
        rows.append(row(f"Ray embedding from JPEG (ResNet-20 features), {len(vectors):,} images, {workers} worker(s)",
                        "single machine: decode (all cores) + features (all cores)", single_s, t,
                        notes=f"{len(vectors) / t:,.0f} images/s ({len(vectors) / t / workers:,.0f} per worker); "
                              f"single machine {n / single_s:,.0f} images/s"))
    return rows


def _child(name: str) -> None:
    rows = SECTIONS[name]()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in rows:
        r["peak_mb"] = round(peak)
        r["section"] = name
    print("BENCH-JSON " + json.dumps(rows))


def _machine() -> str:
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:  # the report must still be written
        gpu = "unknown"
    return f"{platform.machine()}, {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}"


def _fmt(x: float | None, unit: str) -> str:
    if x is None:
        return "–"
    if unit == "s/image":
        return f"{x * 1e6:.1f} µs/img"
    if unit == "AP":
        return f"AP {x:.3f}"
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def write_report(rows: list[dict[str, Any]], elapsed: float, only: list[str] | None = None) -> Path:
    rerun = sorted({r["section"] for r in rows if r.get("rerun")}) if only else []
    out = ROOT / "docs" / "BENCHMARKS.md"
    lines = [
        "# Benchmarks", "",
        f"Produced by `make bench` (`python -m bench.run`) on {time.strftime('%Y-%m-%d')}, machine: {_machine()}. "
        f"Data: `{SPEC}`. Every ratio is baseline time / our time, both measured in the same run on the same data; "
        f"peak memory is the section process's maximum RSS. "
        + (f"Sections {', '.join(rerun)} were re-run on their own (`--only`); the other rows come from the last "
           f"full run (about 12 minutes)." if only else f"Whole run: {elapsed / 60:.1f} min."), "",
        "| figure | baseline | baseline | ours | ratio | peak MB | notes |", "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else "–"
        lines.append(f"| {r['figure']} | {r['baseline']} | {_fmt(r['baseline_s'], r['unit'])} | "
                     f"{_fmt(r['ours_s'], r['unit'])} | {ratio} | {r.get('peak_mb', '–')} | {r['notes']} |")
    lines += ["", "Sections and what they measure:", ""]
    lines += [f"- `{name}`: {' '.join((fn.__doc__ or '').split())}" for name, fn in SECTIONS.items()]
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", choices=list(SECTIONS))
    parser.add_argument("--section", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.section:
        _child(args.section)
        return 0
    if SPEC == "digits":
        print(f"note: {CIFAR} not found; benchmarking on digits instead")
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    for name in args.only or list(SECTIONS):
        print(f"== {name}", flush=True)
        out = subprocess.run([sys.executable, "-m", "bench.run", "--section", name], cwd=ROOT, capture_output=True,
                             text=True)
        found = [line for line in out.stdout.splitlines() if line.startswith("BENCH-JSON ")]
        if out.returncode or not found:
            print(out.stdout[-2000:], out.stderr[-3000:])
            rows.append(row(name, "–", None, 0.0, notes=f"FAILED: {out.stderr.strip().splitlines()[-1:]}"))
            continue
        for r in json.loads(found[0][len("BENCH-JSON "):]):
            rows.append(r)
            ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else "-"
            print(f"  {r['figure']}: ours {_fmt(r['ours_s'], r['unit'])}, {r['baseline']} "
                  f"{_fmt(r['baseline_s'], r['unit'])}, ratio {ratio}, peak {r['peak_mb']} MB", flush=True)
    store = ROOT / "docs" / "benchmarks.json"
    if args.only:
        for r in rows:
            r["rerun"] = True
    if args.only and store.exists():  # keep the other sections' rows from the last full run
        rows = [r for r in json.loads(store.read_text()) if r.get("section") not in args.only] + rows
        order = list(SECTIONS)
        rows.sort(key=lambda r: order.index(r["section"]) if r.get("section") in order else len(order))
    store.write_text(json.dumps(rows, indent=1))
    path = write_report(rows, time.time() - t0, args.only)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
