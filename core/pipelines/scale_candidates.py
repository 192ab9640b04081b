"""Near-duplicate candidates on Ray: the lists of `python -m core candidates`, their pixel work spread over a cluster.

The candidates' algorithm (core.selections.candidates) reads pixels in two places only, its `Pixels`:
the cue vectors of some images and the pair scores of some pairs. Here both run as Ray tasks, each
decoding the images it needs from where the job found them (a file, a Parquet row, a tar member);
the searches, the merging and the ranking stay on the driver, where the cue vectors of even a million
images fit (768 MB). So the lists equal the single-machine ones: same cues, same neighbours, same
scores. A task killed mid-job is run again by Ray and gives the same scores.

Each scope's parts are written to OUT/candidates/<cache key>.npz; opening the folder in the app
(core.pipelines.results) stores them in the cache under those keys, so the Near-duplicates and Review
pages, Home and the CLI read them as their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.data import cache
from core.data.datasets import Dataset, decode_image
from core.data.scope import SCOPES, Scope
from core.data.shards import ScaleError, read_location
from core.data.types import Images, ProgressFn, report
from core.features.pair_score import PairScoreConfig, Zoom, score_pairs
from core.pipelines.faults import kill_point
from core.pipelines.ray_runtime import connect
from core.pipelines.result_folder import update_job
from core.selections.candidates import CandidateConfig, candidate_parts, part_arrays, pixel_cue

CUE_PART = 4096  # images per cue task
MEMO_VIEWS_UP_TO = 500_000  # images up to which each view's cue is computed once for all (8 views: 6 GB at 1M)
SCORE_PART = 4096  # pairs per score task (cut at a query's last pair)
FOLDER = "candidates"


def _decode(locations: list[str], idx: NDArray[np.int64], size: tuple[int, int]) -> Images:
    """The images idx as the result folder's dataset shows them (decoded at the job's size)."""
    out = np.zeros((len(idx), size[0], size[1], 3), np.uint8)
    for k, i in enumerate(idx):
        out[k], _ = decode_image(read_location(locations[int(i)]), size)
    return out


def _cue_task(locations: list[str], idx: NDArray[np.int64], size: tuple[int, int], side: int, mirrored: bool,
              shift: tuple[int, int]) -> NDArray[np.float32]:
    return pixel_cue(_decode(locations, idx, size), side, mirrored, shift)


def _score_task(locations: list[str], a: NDArray[np.int64], b: NDArray[np.int64], size: tuple[int, int],
                cfg: PairScoreConfig, zooms: tuple[Zoom, ...], part: int, out: str) -> NDArray[np.float32]:
    import torch

    kill_point("candidates", part, Path(out))
    torch.set_num_threads(1)  # one task a CPU
    used, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    images = _decode(locations, used, size)
    return score_pairs(images, inv[: len(a)], inv[len(a):], cfg, zooms, threads=1)


class RayPixels:
    """The candidates' pixel work (core.selections.candidates.Pixels) as Ray tasks over a result folder's images."""

    def __init__(self, ds: Dataset, out: Path, address: str | None = None, num_cpus: int | None = None) -> None:
        locations = getattr(ds.images, "locations", None)
        if locations is None:
            raise ScaleError(f"{ds.name} is not a Ray result folder: run `python -m core candidates` on it instead")
        self.ray = connect(address, num_cpus)
        self.locations = self.ray.put(list(locations))
        self.size = (int(ds.image_shape[0]), int(ds.image_shape[1]))
        self.out = str(out)
        self.n = len(ds)
        self.views: dict[tuple[int, bool, tuple[int, int]], NDArray[np.float32]] = {}

    def cue(self, idx: NDArray[np.int64], side: int, mirrored: bool, shift: tuple[int, int],
            on_progress: ProgressFn | None) -> NDArray[np.float32]:
        """The cue of images idx; each view is computed once for every image (one round of tasks for all the
        scopes and classes that ask for it), up to MEMO_VIEWS_UP_TO images."""
        if self.n > MEMO_VIEWS_UP_TO:
            return self._cue(idx, side, mirrored, shift, on_progress)
        view = (side, mirrored, shift)
        if view not in self.views:
            self.views[view] = self._cue(np.arange(self.n), side, mirrored, shift, on_progress)
        return self.views[view][idx]

    def _cue(self, idx: NDArray[np.int64], side: int, mirrored: bool, shift: tuple[int, int],
             on_progress: ProgressFn | None) -> NDArray[np.float32]:
        task = self.ray.remote(_cue_task)
        parts = [idx[lo : lo + CUE_PART] for lo in range(0, len(idx), CUE_PART)]
        refs = [task.remote(self.locations, p, self.size, side, mirrored, shift) for p in parts]
        done = self._gather(refs, [len(p) for p in parts], on_progress, "pixel cue")
        return np.concatenate(done) if done else np.zeros((0, side * side * 3), np.float32)

    def scores(self, a: NDArray[np.int64], b: NDArray[np.int64], cfg: PairScoreConfig, zooms: tuple[Zoom, ...],
               on_progress: ProgressFn | None, phase: str) -> NDArray[np.float32]:
        order = np.argsort(a, kind="stable")
        sa = a[order]
        cuts = [0]
        while cuts[-1] < len(a):
            nxt = min(len(a), cuts[-1] + SCORE_PART)
            cuts.append(int(np.searchsorted(sa, sa[nxt - 1], side="right")) if nxt < len(a) else nxt)
        task = self.ray.remote(_score_task)
        spans = list(zip(cuts, cuts[1:]))
        refs = [task.remote(self.locations, a[order[lo:hi]], b[order[lo:hi]], self.size, cfg, zooms, k, self.out)
                for k, (lo, hi) in enumerate(spans)]
        done = self._gather(refs, [hi - lo for lo, hi in spans], on_progress, phase)
        out = np.empty(len(a), np.float32)
        for (lo, hi), part in zip(spans, done):
            out[order[lo:hi]] = part
        return out

    def _gather(self, refs: list[Any], sizes: list[int], on_progress: ProgressFn | None,
                phase: str) -> list[NDArray[np.float32]]:
        """Every task's result in order, reporting progress as they finish."""
        where = {ref: k for k, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending, total, done = list(refs), sum(sizes), 0
        while pending:
            finished, pending = self.ray.wait(pending, num_returns=1)
            for ref in finished:
                k = where[ref]
                results[k] = self.ray.get(ref)
                done += sizes[k]
            report(on_progress, phase, done, total, "on Ray")
        return results


@dataclass(frozen=True)
class CandidatesStep:
    pairs: dict[str, int]  # scope -> pairs in its list
    files: list[Path]
    seconds: float


def scale_candidates(out: Path, ds: Dataset, scopes: tuple[Scope, ...] = SCOPES,
                     cfg: CandidateConfig = CandidateConfig(), *, address: str | None = None,
                     num_cpus: int | None = None, on_progress: ProgressFn | None = None) -> CandidatesStep:
    """The candidates of `scopes` for a result folder's dataset (opened by core.pipelines.results), computed with
    Ray and written to out/candidates/ as the cache parts the app reads back; recorded in the job."""
    t0 = time.perf_counter()
    pixels = RayPixels(ds, out, address, num_cpus)
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    files, pairs = [], {}
    for scope in scopes:
        parts = candidate_parts(ds, scope, cfg, on_progress=on_progress, pixels=pixels)
        pairs[scope.value] = sum(len(p) for p in parts)
        for key, arrays in part_arrays(ds, scope, cfg).items():
            path = folder / f"{key}.npz"
            cache.write_npz(path, arrays)
            files.append(path)
    seconds = time.perf_counter() - t0
    update_job(out, candidates={"scopes": [s.value for s in scopes], "pairs": pairs, "fingerprint": ds.fingerprint,
                                "network": cfg.network, "seconds": round(seconds, 1)})
    return CandidatesStep(pairs, files, seconds)
