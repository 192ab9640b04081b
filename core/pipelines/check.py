"""Check images that arrive later (a new batch, a new test set) against a dataset: which are already in it?

For each new image, its best matches in the dataset's training split and in its test split, by the
same cues and score as the near-duplicate candidates (core.selections.candidates): the ten views of
the 8-pixel cue searched against the dataset's cached cue, the pHash pairs within 8 bits and, when
the trained network's embedding is on disk, its nearest neighbours; every pair then gets the pair
score, a new image's best pairs also at the zooms. The decision follows the near-duplicate settings'
minimum score; a new image whose pixels equal a dataset image's inherits that image's judgments.
Nothing is written into the dataset: the new images are decoded in memory and the result is cached
under their content digest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.data import cache
from core.data.datasets import SPLIT_NAMES, TEST, TRAIN, Dataset, Skipped, decode_image
from core.data.judgments import JudgmentStore, pair_key
from core.data.types import Images, ProgressFn, report
from core.features.embedding import EmbedConfig, cached_embedding_key, trained_classifier
from core.features.hashing import HashConfig, dataset_exact_keys, dataset_hashes, exact_keys, hash_images
from core.features.pair_score import score_pairs
from core.features.training import predict_features, to_tensor
from core.pipelines.settings import NearDupSettings
from core.selections.candidates import (
    CandidateConfig,
    cached_pixel_cue,
    nearest,
    pixel_cue,
    query_views,
    top_per_query,
    view_name,
)
from core.selections.review import Judged

CHECK_VERSION = 1
MAX_FILES = 5_000  # one check reads at most this many files (the app's uploads are bounded lower)


@dataclass(frozen=True, eq=False)
class CheckResult:
    """The matches of every readable new image, best first per image and split.

    Rows (one per match kept): `query` indexes `names`, `match` the dataset, with its pair score, the cue
    that found it, and whether it counts as a duplicate at the minimum score (a judgment wins).
    """

    names: tuple[str, ...]
    skipped: tuple[Skipped, ...]
    query: NDArray[np.int64]
    match: NDArray[np.int64]
    score: NDArray[np.float32]
    cue: NDArray[np.str_]
    duplicate: NDArray[np.bool_]
    judgment: tuple[str, ...]  # the judgment's label where the pair was judged, else ""
    identical: NDArray[np.int64]  # per new image: the dataset image with the very same pixels, or -1
    min_score: float
    split: NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))  # each match's split

    def best(self, i: int, split: int) -> int | None:
        """The row of new image i's best match in `split`, or None."""
        rows = np.flatnonzero((self.query == i) & (self.split == split))
        return int(rows[np.argmax(self.score[rows])]) if len(rows) else None

    def in_dataset(self, split: int) -> NDArray[np.int64]:
        """New images with a duplicate in `split`, sorted."""
        return np.unique(self.query[self.duplicate & (self.split == split)])


def read_images(files: Sequence[tuple[str, bytes | Path]], size: tuple[int, int]) -> tuple[
        Images, tuple[str, ...], tuple[Skipped, ...]]:
    """Decode (name, bytes or path) pairs at `size` (the dataset's), in memory; unreadable ones are skipped with
    their reason (decompression bombs and non-images included). Nothing is written."""
    arrays, names, skipped = [], [], []
    for name, data in files[:MAX_FILES]:
        try:
            arr, _ = decode_image(data if isinstance(data, bytes) else Path(data), size)
        except (ValueError, OSError) as exc:
            skipped.append(Skipped(name, str(exc) or type(exc).__name__))
            continue
        arrays.append(arr)
        names.append(name)
    skipped += [Skipped(name, f"more than {MAX_FILES:,} files: not read") for name, _ in files[MAX_FILES:]]
    h, w = size
    images = np.stack(arrays) if arrays else np.zeros((0, h, w, 3), np.uint8)
    return images, tuple(names), tuple(skipped)


def folder_files(folder: str | Path) -> list[tuple[str, Path]]:
    """Every file under `folder` (not following links to folders), by its path relative to it, sorted."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}: give a folder of images to check")
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.startswith("."):
                p = Path(dirpath) / f
                out.append((p.relative_to(root).as_posix(), p))
    return out


def _as_dataset_images(images: Images, ds: Dataset) -> Images:
    """New images with the dataset's channels (gray datasets compare in gray)."""
    if ds.image_shape[2] == 1 and images.shape[-1] == 3:
        gray = np.rint(images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        return gray.astype(np.uint8)[..., None]
    return images


def check_images(ds: Dataset, images: Images, names: tuple[str, ...], settings: NearDupSettings = NearDupSettings(),
                 *, skipped: tuple[Skipped, ...] = (), top: int = 3, judged: Judged | None = None,
                 cfg: CandidateConfig = CandidateConfig(), on_progress: ProgressFn | None = None) -> CheckResult:
    """The matches of `images` (N, H, W, C at the dataset's size) in ds's training and test splits, cached by their
    content digest and the parameters (the dataset's own cues are read from the cache)."""
    images = _as_dataset_images(np.asarray(images, np.uint8), ds)
    digest = hashlib.blake2b(np.ascontiguousarray(images).tobytes(), digest_size=16).hexdigest()
    network = cached_embedding_key(ds, EmbedConfig()) if cfg.network else None
    key = cache.make_key("check", {"cfg": cfg, "top": top, "network": network, "version": CHECK_VERSION},
                         ds.fingerprint, digest)
    raw = cache.cached_arrays(key, lambda: _matches(ds, images, cfg, top, network is not None, on_progress))
    judged = JudgmentStore(ds.fingerprint).load() if judged is None else judged
    identical = raw["identical"]
    q, m, score = raw["query"], raw["match"], raw["score"]
    labels = []
    for i, j in zip(q, m):
        x = int(identical[i])
        found = judged.get(pair_key(x, int(j))) if x >= 0 and x != j else None
        labels.append(found.label if found is not None else "")
    judged_dup = np.array([lab in ("same", "near") for lab in labels], bool)
    judged_not = np.array([lab in ("similar", "different") for lab in labels], bool)
    duplicate = judged_dup | ((score >= settings.min_score) & ~judged_not) | (identical[q] == m)
    return CheckResult(names, skipped, q, m, score, raw["cue"], duplicate, tuple(labels), identical,
                       settings.min_score, ds.split[m] if len(m) else np.zeros(0, np.int8))


def _embed_new(ds: Dataset, images: Images) -> NDArray[np.float32]:
    """The trained network's penultimate features of new images (the network is read from the cache)."""
    model, info = trained_classifier(ds, EmbedConfig())
    import torch

    device = next(model.parameters()).device.type
    mean, std = (torch.from_numpy(info[k]).to(device) for k in ("mean", "std"))
    feats = predict_features(model, to_tensor(images, device), mean, std, precision=info.get("precision"))
    vecs: NDArray[np.float32] = feats.cpu().numpy().astype(np.float32)
    unit: NDArray[np.float32] = (vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)).astype(
        np.float32)
    return unit


def _matches(ds: Dataset, images: Images, cfg: CandidateConfig, top: int, network: bool,
             on_progress: ProgressFn | None) -> dict[str, NDArray[Any]]:
    n = len(images)
    views = query_views(cfg, min(ds.image_shape[:2]))
    splits = [np.flatnonzero(ds.split == s) for s in (TRAIN, TEST)]
    qa: list[NDArray[np.int64]] = []
    mb: list[NDArray[np.int64]] = []
    sims: list[NDArray[np.float32]] = []
    cues: list[NDArray[np.str_]] = []

    def add(q: NDArray[np.int64], m: NDArray[np.int64], s: NDArray[np.float32], cue: str) -> None:
        qa.append(q)
        mb.append(m)
        sims.append(s.astype(np.float32))
        cues.append(np.full(len(q), cue))

    for k, (side, mirrored, shift) in enumerate(views):
        base = cached_pixel_cue(ds, side, False, on_progress)
        query = pixel_cue(images, side, mirrored, shift) if n else np.zeros((0, base.shape[1]), np.float32)
        for pool in splits:
            if len(pool) and n:
                idx, sim = nearest(query, base[pool], cfg.top_k)
                add(np.repeat(np.arange(n), idx.shape[1]), pool[idx.reshape(-1)], sim.reshape(-1),
                    view_name(side, mirrored, shift))
        report(on_progress, "neighbours", k + 1, len(views))
    if cfg.hash_radius > 0 and n:
        codes = dataset_hashes(ds, HashConfig("phash", 8), on_progress)
        mine = hash_images(images, HashConfig("phash", 8))
        theirs = codes.view(np.uint64).reshape(len(codes))
        ours = mine.view(np.uint64).reshape(n)
        for i in range(n):
            bits = np.bitwise_count(theirs ^ ours[i])
            hit = np.flatnonzero(bits <= cfg.hash_radius)
            add(np.full(len(hit), i), hit, (1 - bits[hit] / 64).astype(np.float32), f"phash<={cfg.hash_radius}")
    if network and n:
        vecs = _embed_new(ds, images)
        from core.features.embedding import cached_embedding

        emb = cached_embedding(ds, EmbedConfig())
        assert emb is not None
        for pool in splits:
            if len(pool):
                idx, sim = nearest(vecs, emb.vectors[pool], cfg.top_k)
                add(np.repeat(np.arange(n), idx.shape[1]), pool[idx.reshape(-1)], sim.reshape(-1), "network")
    keys = dataset_exact_keys(ds)
    where = {bytes(k): i for i, k in enumerate(keys)}
    identical = np.array([where.get(bytes(k), -1) for k in exact_keys(images)] if n else [], np.int64)
    if not qa:
        empty = np.zeros(0, np.int64)
        return {"query": empty, "match": empty, "score": np.zeros(0, np.float32), "cue": np.zeros(0, "<U1"),
                "identical": identical}
    q: NDArray[np.int64] = np.concatenate(qa)
    m: NDArray[np.int64] = np.concatenate(mb)
    s: NDArray[np.float32] = np.concatenate(sims)
    c: NDArray[np.str_] = np.concatenate(cues)
    order = np.argsort(-s, kind="stable")  # each pair once, credited to the cue that saw it most similar
    q, m, s, c = q[order], m[order], s[order], c[order]
    _, first = np.unique(q * len(ds) + m, return_index=True)
    first = np.sort(first)
    q, m, s, c = q[first], m[first], s[first], c[first]
    # score against a small array: the new images, then only the dataset images some pair needs
    used, pos = np.unique(m, return_inverse=True)
    combo = np.concatenate([images, np.asarray(ds.images[used])])
    b = n + pos
    score = score_pairs(combo, q, b, cfg.score, on_progress=on_progress, phase="pair score")
    if cfg.score.zooms and cfg.zoomed_per_query:
        split_of = ds.split[m].astype(np.int64)
        best = top_per_query(q * 2 + split_of, score, cfg.zoomed_per_query)  # a new image's best in each split
        zoomed = score_pairs(combo, q[best], b[best], cfg.score, cfg.score.zooms, on_progress=on_progress,
                             phase="pair score at the zooms")
        score[best] = np.maximum(score[best], zoomed)
    score[identical[q] == m] = 1.0  # the very same pixels
    split_of = ds.split[m].astype(np.int64)
    keep = top_per_query(q * 2 + split_of, score, top)
    order = keep[np.lexsort((-score[keep], q[keep]))]
    return {"query": q[order], "match": m[order], "score": score[order], "cue": c[order], "identical": identical}


def rows(ds: Dataset, result: CheckResult) -> list[dict[str, Any]]:
    """One row per match, for the CSV and the page: the new image, its match, the score and the decision."""
    return [{"image": result.names[int(q)], "match": str(ds.ids[int(m)]), "match_split": SPLIT_NAMES[int(sp)],
             "match_class": ds.classes[int(ds.labels[int(m)])], "score": round(float(s), 4), "cue": str(c),
             "decision": "duplicate" if d else "distinct", "judgment": j}
            for q, m, sp, s, c, d, j in zip(result.query, result.match, result.split, result.score, result.cue,
                                            result.duplicate, result.judgment)]
