"""The approximate (IVF) pixel-cue search against the exact one, at 60,000 (CIFAR-10), 250,000 and 1,000,000
(synthetic, with planted copies) images: recall of the pairs above the default minimum score, time and peak memory.

Each size runs in a fresh process, so its peak resident memory is its own. The recall is measured the way the
candidates search: every query view (plain, shifted, mirrored), train against train, on a sample of queries (every
planted copy and 2,000 others); the exact search's pairs whose pair score reaches the default minimum score are the
truth, and the recall is the share of them that the IVF index also returns. Both searches over every query are
timed on a sample and scaled to all queries (the exact one at a million would take most of an hour a view): the
exact one on the recall's queries, the IVF index on 50,000 images. A size's figures are kept in
artifacts/bench/ (with a fingerprint of this file), so a stopped run resumes at the next size."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CIFAR, ROOT, row, section

SIZES = (60_000, 250_000, 1_000_000)
SAMPLE = 2_000
IVF_SAMPLE = 50_000  # queries on which the IVF search of every image is timed
KEPT = ROOT / "artifacts" / "bench"


def synthetic_images(n: int, planted: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n 32x32 RGB images drawn around 2,000 smooth prototypes (dense clusters, the hard case for an index), the
    last `planted` of them copies of earlier ones (moved 1 pixel, brightness x0.85-1.15, noise, half mirrored).
    Returns (images, originals, copies)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(2000, 3, 4, 4, generator=g)
    images = np.empty((n, 32, 32, 3), np.uint8)
    for lo in range(0, n, 50_000):
        m = min(50_000, n - lo)
        which = torch.from_numpy(rng.integers(0, len(protos), m))
        coarse = F.interpolate(protos[which], size=8, mode="bilinear", align_corners=False)
        coarse = coarse + 0.6 * torch.randn(m, 3, 8, 8, generator=g)
        fine = F.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
        fine = fine + 0.25 * torch.randn(m, 3, 32, 32, generator=g)
        images[lo : lo + m] = (128 + 50 * fine).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    copies = np.arange(n - planted, n)
    originals = rng.integers(0, n - planted, planted)
    src = images[originals].astype(np.float32)
    src = np.roll(src, shift=(1, 1), axis=(1, 2)) * rng.uniform(0.85, 1.15, (planted, 1, 1, 1))
    src += rng.normal(0, 4, src.shape)
    flip = rng.random(planted) < 0.5
    src[flip] = src[flip][:, :, ::-1]
    images[copies] = np.clip(src, 0, 255).astype(np.uint8)
    return images, originals, copies


def _cifar_images() -> np.ndarray:
    from core.data.datasets import load_dataset

    return np.asarray(load_dataset(f"imagefolder:{CIFAR}").images)


def _rss_mb() -> float:
    """This process's resident memory now, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(n: int, source: str) -> dict[str, Any]:
    """One size in this process: the figures of one bench row."""
    import torch

    from core.features.pair_score import score_pairs
    from core.features.search import ExactIndex, IvfIndex, ivf_cells
    from core.selections.candidates import CandidateConfig, pixel_cue, query_views, shifted
    from core.selections.review import DEFAULT_MIN_SCORE

    torch.set_num_threads(2)
    if source == "cifar10":
        images, originals, copies = _cifar_images(), np.zeros(0, np.int64), np.zeros(0, np.int64)
    else:
        images, originals, copies = synthetic_images(n, n // 100)
    n = len(images)
    cfg = CandidateConfig()
    k = cfg.top_k + 1  # train against train: the first neighbour is the image itself
    t0 = time.perf_counter()
    base = np.concatenate([pixel_cue(images[lo : lo + 50_000], 8) for lo in range(0, n, 50_000)])
    cue_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    others = rng.choice(np.setdiff1d(np.arange(n), copies), SAMPLE, replace=False)
    sample = np.sort(np.concatenate([copies[:SAMPLE], others]))
    views = query_views(cfg, 32)
    queries = [pixel_cue(shifted(images[sample], *shift) if shift != (0, 0) else images[sample], 8, mirrored)
               for _, mirrored, shift in views]
    rss_data = _rss_mb()

    t0 = time.perf_counter()
    ivf = IvfIndex(base)
    build_s = time.perf_counter() - t0
    timed_queries = np.sort(rng.choice(n, min(n, IVF_SAMPLE), replace=False))
    t0 = time.perf_counter()
    ivf.search(base[timed_queries], k)  # one view, scaled to every image as a query
    ivf_view_s = (time.perf_counter() - t0) * n / len(timed_queries)
    ivf_found = [ivf.search(q, k)[0] for q in queries]
    rss_ivf = _rss_mb()
    del ivf

    exact = ExactIndex(base)
    t0 = time.perf_counter()
    exact_found = [exact.search(q, k)[0] for q in queries]
    exact_sample_s = (time.perf_counter() - t0) / len(views)

    def pairs(found: list[np.ndarray]) -> set[tuple[int, int]]:
        out = set()
        for ids in found:
            for q, row_ids in zip(sample, ids):
                out.update((min(q, int(b)), max(q, int(b))) for b in row_ids if b >= 0 and b != q)
        return out

    truth_all, got = pairs(exact_found), pairs(ivf_found)
    a, b = (np.array(x, np.int64) for x in zip(*sorted(truth_all)))
    score = score_pairs(images, a, b, cfg.score)
    above = {(int(x), int(y)) for x, y, s in zip(a, b, score) if s >= DEFAULT_MIN_SCORE}
    recall = len(above & got) / max(1, len(above))
    planted_found = None
    if len(copies):
        sampled = set(sample.tolist())
        plan = {(int(o), int(c)) for o, c in zip(originals, copies) if c in sampled}
        planted_found = (len(plan & got) / len(plan), len(plan & truth_all) / len(plan), len(plan))
    return {"n": n, "source": source, "cells": ivf_cells(n), "cue_s": cue_s, "build_s": build_s,
            "ivf_view_s": ivf_view_s, "exact_view_s": exact_sample_s * n / len(sample), "views": len(views),
            "recall": recall, "above": len(above), "pairs": len(truth_all), "planted": planted_found,
            "rss_data": rss_data, "rss_ivf": rss_ivf, "sample": len(sample)}


def _child(n: int, source: str, queue: Any) -> None:
    queue.put(measure(n, source))


def _kept(n: int, source: str) -> Path:
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return KEPT / f"approximate-{n}-{source}-{digest}.json"


def _measured(n: int, source: str) -> dict[str, Any]:
    """One size's figures, from a fresh process (or kept from an earlier run of this very file)."""
    kept = _kept(n, source)
    if kept.exists():
        return dict(json.loads(kept.read_text()))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(n, source, queue))
    proc.start()
    while True:  # a child killed (out of memory) never answers: say so instead of waiting for ever
        try:
            r: dict[str, Any] = queue.get(timeout=30)
            break
        except Exception:
            if not proc.is_alive():
                raise RuntimeError(f"the {n:,}-image measurement died (exit code {proc.exitcode})") from None
    proc.join()
    KEPT.mkdir(parents=True, exist_ok=True)
    tmp = kept.with_suffix(".tmp")
    tmp.write_text(json.dumps(r))
    tmp.replace(kept)
    return r


@section
def approximate() -> list[dict[str, Any]]:
    """The IVF search's recall, time and memory against the exact search at 60k, 250k and 1M images."""
    from core.features.search import NPROBE

    rows = []
    for n in SIZES:
        source = "cifar10" if n == 60_000 and (CIFAR / "train").is_dir() else "synthetic"
        r = _measured(n, source)
        ivf_total = r["build_s"] + r["views"] * r["ivf_view_s"]
        exact_total = r["views"] * r["exact_view_s"]
        planted = ("" if r["planted"] is None else
                   f"; planted copies among the sampled queries found: IVF {100 * r['planted'][0]:.1f}%, exact "
                   f"{100 * r['planted'][1]:.1f}% of {r['planted'][2]:,}")
        rows.append(row(
            f"approximate cue search, {r['n']:,} images ({r['source']}), every image a query, {r['views']} views",
            "the exact search (bf16 + fp32 re-rank), timed on the sampled queries and scaled", exact_total,
            ivf_total,
            notes=f"recall {100 * r['recall']:.2f}% of the {r['above']:,} exact pairs with pair score >= 0.9 "
                  f"(of {r['pairs']:,} exact pairs of {r['sample']:,} sampled queries){planted}; IVF-Flat "
                  f"{r['cells']:,} cells, nprobe {NPROBE}: build {r['build_s']:.1f} s + {r['ivf_view_s']:.1f} s per "
                  f"view (timed on {min(r['n'], IVF_SAMPLE):,} queries, scaled); resident memory "
                  f"{r['rss_data']:,.0f} MB with the images and cues, "
                  f"+{r['rss_ivf'] - r['rss_data']:,.0f} MB with the IVF index searched; "
                  f"cue of every image {r['cue_s']:.1f} s",
            command=f"python -m bench.run --only approximate  (bench.sections.approximate.measure({n}, "
                    f"{r['source']!r}))"))
        rows[-1]["peak_mb"] = round(r["rss_ivf"])  # the measuring process's, with the IVF index searched
    return rows
