"""Scale-out on Ray: the same hashing, exact search and clustering, spread over a cluster.

Sources are split into shards (files of an image folder, row ranges of Parquet files, tar files
of a WebDataset). Ray Data maps the shards over workers; each shard is decoded with the
single-machine decoder, hashed with the single-machine batch hasher, and written as one Parquet
file under a temporary name that is renamed into place, so an interrupted job resumes from the
shards already written and never reads a partial one. The exact Hamming search is the
single-machine plan cut into disjoint parts (one multi-index block and a range of rows each),
run as Ray tasks and merged: the same pairs, none missed. Semantic clustering runs one task per
class. Results therefore equal the single-machine path wherever both can run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from core.data.datasets import TEST, TRAIN, Dataset, load_image_folder, make_dataset
from core.data.device import pick_device
from core.data.scope import SCOPES
from core.data.shards import SHARD_SIZE, ScaleError, Shard, decode_shard, first_size, list_shards, parse_source
from core.data.types import ProgressFn, report
from core.features.embedding import EmbedConfig, build_network, trained_classifier
from core.features.hashing import HashConfig, hash_images
from core.features.neighbors import check_radius, merge, partition, plan_search, run_parts, to_words
from core.features.training import arrays_to_state, predict_features, state_to_arrays, to_tensor
from core.pipelines.faults import kill_point
from core.pipelines.ray_runtime import connect
from core.pipelines.result_folder import Hashed, read_hashes, start_job, update_job, write_results, write_table_atomic
from core.selections.duplicates import (
    DuplicateIndex,
    dedup_selection,
    groups_at,
    leaked_test_images,
    pair_scopes,
)
from core.selections.semantic import Dendrograms, Piece, SemanticConfig, build_dendrograms, semantic_selection

log = logging.getLogger("redex.scale")

def hash_shard(shard: Shard, size: tuple[int, int], cfg: HashConfig, out_dir: str) -> dict[str, Any]:
    """Decode and hash one shard into out_dir/hashes/shard-NNNNN.parquet (skipped if already there)."""
    import pyarrow as pa

    path = Path(out_dir) / "hashes" / f"shard-{shard.index:05d}.parquet"
    if path.exists():
        return {"shard": shard.index, "written": False}
    kill_point("hash", shard.index, Path(out_dir))
    meta, images, sizes, bad = decode_shard(shard, size)
    codes = hash_images(images, cfg) if len(images) else np.zeros((0, cfg.bits // 8), np.uint8)
    table = pa.table({"id": [m[0] for m in meta], "path": [m[3] for m in meta], "class": [m[1] for m in meta],
                      "split": pa.array([m[2] for m in meta], pa.int8()),
                      "height": sizes[:, 0].tolist(), "width": sizes[:, 1].tolist(),
                      "hash": [bytes(c).hex() for c in codes], "shard": [shard.index] * len(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table_atomic(table, path)
    if bad:
        (path.parent / f"skipped-{shard.index:05d}.json").write_text(json.dumps(bad))
    return {"shard": shard.index, "written": True}

def hash_source(spec: str, out: str | Path, cfg: HashConfig = HashConfig(), *, address: str | None = None,
                num_cpus: int | None = None, shard_size: int = SHARD_SIZE,
                on_progress: ProgressFn | None = None) -> Hashed:
    """Hash every image of `spec` on Ray into out/hashes/, resuming from shards already written."""
    ray = connect(address, num_cpus)
    classes, shards, skipped = list_shards(spec, shard_size)
    if not shards:
        raise ScaleError(f"no images found in {spec}")
    size = first_size(shards)
    out = Path(out)
    start_job(out, spec, cfg, size, classes)
    (out / "hashes").mkdir(parents=True, exist_ok=True)
    if skipped:
        (out / "hashes" / "skipped-listing.json").write_text(json.dumps(skipped))
    todo = [s for s in shards if not (out / "hashes" / f"shard-{s.index:05d}.parquet").exists()]
    report(on_progress, "hash shards", len(shards) - len(todo), len(shards))
    if todo:
        import ray.data

        items = [{"shard": json.dumps(asdict(s))} for s in todo]

        def work(batch: dict[str, Any]) -> dict[str, Any]:
            done = [hash_shard(Shard(**{**(d := json.loads(s)), "items": tuple(map(tuple, d["items"]))}),
                               size, cfg, str(out))["shard"] for s in batch["shard"]]
            return {"shard": np.array(done)}

        ds = ray.data.from_items(items).map_batches(work, batch_size=1)  # Ray retries a lost worker's task
        for k, _ in enumerate(ds.iter_rows()):
            report(on_progress, "hash shards", len(shards) - len(todo) + k + 1, len(shards))
    return read_hashes(out, classes)

def find_pairs_ray(codes: NDArray[np.uint8], radius: int, *, address: str | None = None,
                   num_cpus: int | None = None, pieces: int = 8) -> Any:
    """The exact search, its plan cut into disjoint parts run as Ray tasks: the same pairs as find_pairs."""
    return search_ray(codes, radius, address=address, num_cpus=num_cpus, pieces=pieces).pairs

@dataclass(frozen=True, eq=False)
class RaySearch:
    """The pairs of a Ray search, and each worker process's peak resident memory (bytes, by pid)."""

    pairs: Any
    worker_peak: dict[int, int]

def _run_parts_measured(words: NDArray[np.uint64], plan: Any, parts: list[Any], radius: int) -> tuple[Any, int, int]:
    """run_parts on a worker, with that worker's pid and its peak resident memory so far (getrusage)."""
    import resource

    pairs = run_parts(words, plan, parts, radius)
    return pairs, os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

def search_ray(codes: NDArray[np.uint8], radius: int, *, address: str | None = None,
               num_cpus: int | None = None, pieces: int = 8) -> RaySearch:
    """find_pairs_ray, with the measured peak memory of every worker that ran a part."""
    ray = connect(address, num_cpus)
    check_radius(codes, radius)
    words = to_words(codes)
    plan = plan_search(words, radius, codes.shape[1] * 8)
    parts = partition(plan, len(words), pieces)
    by_block: dict[int, list[Any]] = {}
    for p in parts:
        by_block.setdefault(p.block, []).append(p)
    groups = [ps[k::2] for ps in by_block.values() for k in range(2)] if plan.route == "mih" else [
        parts[k::pieces] for k in range(pieces)]
    task = ray.remote(max_retries=3)(_run_parts_measured)
    ref = ray.put(words)
    done = ray.get([task.remote(ref, plan, g, radius) for g in groups if g])
    peaks: dict[int, int] = {}
    for _, pid, peak in done:
        peaks[pid] = max(peaks.get(pid, 0), peak)
    return RaySearch(merge([d[0] for d in done]), peaks)

def dendrograms_ray(vectors: NDArray[np.float32], labels: NDArray[np.int64], pool: NDArray[np.bool_], cfg: Any = None,
                    *, address: str | None = None, num_cpus: int | None = None) -> Any:
    """build_dendrograms with one Ray task per class; the same pieces as the single-machine path."""
    ray = connect(address, num_cpus)
    cfg = cfg or SemanticConfig()
    task = ray.remote(max_retries=3)(build_dendrograms)
    classes = np.unique(labels[pool])
    refs = []
    for c in classes:
        idx = np.flatnonzero(pool & (labels == c))
        sub_labels = np.full(len(idx), c, np.int64)
        refs.append((idx, task.remote(vectors[idx], sub_labels, np.ones(len(idx), bool), cfg)))
    pieces, routes = [], {}
    for idx, ref in refs:
        d = ray.get(ref)
        for p in d.pieces:
            pieces.append(Piece(p.label, idx[p.indices], p.Z))
        routes.update(d.routes)
    return Dendrograms(tuple(pieces), len(labels), routes)

def decoded_dataset(spec: str, hashed: Hashed, *, address: str | None = None, num_cpus: int | None = None,
                    max_images: int = 200_000, shard_size: int = SHARD_SIZE,
                    on_progress: ProgressFn | None = None) -> Dataset:
    """The images the embedding network trains on, decoded into memory on the driver.

    An image folder is opened with the single-machine loader (its decode cache, so the network
    is the very one `python -m core embed` trains); Parquet and WebDataset shards are decoded as
    Ray tasks. Above `max_images`, an even spread of shards is taken, so every part of the source
    (and with sorted sources, every class) is represented.
    """
    kind, path = parse_source(spec)
    if kind == "imagefolder" and len(hashed.ids) <= max_images:
        ds = load_image_folder(path, on_progress=on_progress)
        if [str(i) for i in ds.ids] != hashed.ids:
            raise ScaleError("the folder changed between the hash and the embedding steps: run again")
        return ds
    ray = connect(address, num_cpus)
    _, shards, _ = list_shards(spec, shard_size)
    step = max(1, -(-sum(len(s.items) or (s.stop - s.start) or shard_size for s in shards) // max_images))
    chosen = shards[::step]
    size = first_size(shards)
    task = ray.remote(max_retries=3)(decode_shard)
    refs = [task.remote(s, size) for s in chosen]
    metas, images = [], []
    for k, ref in enumerate(refs):
        meta, imgs, _, _ = ray.get(ref)
        metas += meta
        images.append(imgs)
        report(on_progress, "decode shards", k + 1, len(refs))
    label_of = {c: k for k, c in enumerate(hashed.classes)}
    return make_dataset(f"{spec} (decoded: {len(metas):,} images)", np.concatenate(images),
                        np.array([label_of[m[1]] for m in metas]), np.array([m[2] for m in metas]), hashed.classes,
                        np.array([m[0] for m in metas]))

class ShardEmbedder:
    """A Ray Data actor: builds the trained network once, then embeds whole shards.

    One actor per worker (per GPU when there are GPUs); each shard's vectors are written to
    out/embeddings/shard-NNNNN.npy under a temporary name and renamed, so a rerun skips them.
    """

    def __init__(self, state: dict[str, Any], info: dict[str, Any], classes: int, size: tuple[int, int],
                 out: str) -> None:
        self.device = pick_device()
        self.precision = info.get("precision")
        self.model = arrays_to_state(build_network(info, 3, classes, min(size)), state["weights"]).to(self.device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = torch.from_numpy(state["mean"]).to(self.device)
        self.std = torch.from_numpy(state["std"]).to(self.device)
        self.size, self.out = size, Path(out)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = []
        for text in batch["shard"]:
            d = json.loads(text)
            shard = Shard(**{**d, "items": tuple(map(tuple, d["items"]))})
            path = self.out / "embeddings" / f"shard-{shard.index:05d}.npy"
            if not path.exists():
                kill_point("embed", shard.index, self.out)
                _, images, _, _ = decode_shard(shard, self.size)
                feats = predict_features(self.model, to_tensor(images, self.device), self.mean, self.std,
                                         precision=self.precision)
                vecs = feats.cpu().numpy().astype(np.float32)
                vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}.npy")
                np.save(tmp, vecs)
                os.replace(tmp, path)
            done.append(shard.index)
        return {"shard": np.array(done)}

def embed_source(spec: str, out: str | Path, classifier: Any, *, address: str | None = None,
                 num_cpus: int | None = None, shard_size: int = SHARD_SIZE, actors: int = 2) -> NDArray[np.float32]:
    """Embed every image of `spec` with a trained classifier on Ray actors; (N, D) in source order.

    `classifier` is (model, info) from core.features.embedding.trained_classifier: the same network as the
    single-machine embedding, so the vectors agree up to float rounding.
    """
    connect(address, num_cpus)
    import ray
    import ray.data

    _, shards, _ = list_shards(spec, shard_size)
    size = first_size(shards)
    model, info = classifier
    state = {"weights": state_to_arrays(model), "mean": info["mean"], "std": info["std"]}
    out = Path(out)
    items = [{"shard": json.dumps(asdict(s))} for s in shards]
    n_classes = int(model.head.out_features)
    spec_info = {k: v for k, v in info.items() if k not in ("mean", "std")}
    gpus = 1 if ray.cluster_resources().get("GPU", 0) else 0
    ds = ray.data.from_items(items).map_batches(
        ShardEmbedder, fn_constructor_args=(state, spec_info, n_classes, size, str(out)), batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, min(actors, len(items)))), num_gpus=gpus)
    for _ in ds.iter_rows():
        pass
    return np.concatenate([np.load(out / "embeddings" / f"shard-{s.index:05d}.npy") for s in shards])


def _timed(seconds: dict[str, float], label: str, fn: Any) -> Any:
    t0 = time.perf_counter()
    out = fn()
    seconds[label] = time.perf_counter() - t0
    return out


@dataclass(frozen=True)
class DuplicatesStep:
    """What `scale duplicates` found and wrote: per-scope (groups, images), leakage, removals, timings."""

    radius: int
    pairs: int
    groups: dict[str, tuple[int, int]]
    leaked: int
    n_test: int
    removed: int
    worker_peak: dict[int, int]
    path: Path
    seconds: dict[str, float]


def scale_duplicates(out: Path, hashed: Hashed, cfg: HashConfig, radius: int, *, address: str | None = None,
                     num_cpus: int | None = None) -> DuplicatesStep:
    """The exact search on Ray tasks, then groups, leakage and the dedup subset as on one machine,
    written to out/duplicates.parquet and recorded in the job."""
    seconds: dict[str, float] = {}
    run = _timed(seconds, "search on Ray", lambda: search_ray(hashed.codes, radius, address=address,
                                                              num_cpus=num_cpus))
    index = DuplicateIndex(cfg, hashed.codes, run.pairs, pair_scopes(run.pairs, hashed.labels, hashed.split), radius)
    groups = {}
    for scope in SCOPES:
        g = groups_at(index, radius, scope, "first", hashed.sizes)
        groups[scope.value] = (len(g), g.n_images)
    leaked = leaked_test_images(index, radius, hashed.split)
    sel = dedup_selection(index, radius, hashed.split, hashed.sizes)
    kept = sel.keep | ~sel.pool
    reasons = ["kept" if k else f"near-duplicate of {hashed.ids[r]} at {d:.0f} bits"
               for k, r, d in zip(kept, sel.representative, np.nan_to_num(sel.distance))]
    path = write_results(out, hashed, "duplicates", group=sel.group, kept=kept, reason=reasons)
    # job.json keeps the key "threshold" (result format 2): the radius under its recorded name
    update_job(out, duplicates={"threshold": radius, "pairs": len(run.pairs), "removed": len(sel.removed),
                                "leaked_test_images": len(leaked)})
    return DuplicatesStep(radius, len(run.pairs), groups, len(leaked), int((hashed.split == TEST).sum()),
                          len(sel.removed), run.worker_peak, path, seconds)


@dataclass(frozen=True)
class SemanticStep:
    """What `scale embed|semantic` computed and wrote; kept/removed/threshold are None for `embed` alone."""

    vectors: tuple[int, int]
    embedding: dict[str, Any]
    pool: int
    kept: int | None
    removed: int | None
    threshold: float | None
    path: Path
    seconds: dict[str, float]


def scale_semantic(source: str, out: Path, hashed: Hashed, embed_cfg: EmbedConfig, keep_fraction: float | None, *,
                   address: str | None = None, num_cpus: int | None = None, train_max: int = 200_000,
                   on_progress: ProgressFn | None = None) -> SemanticStep:
    """The network trained on the decoded train split (on the driver), the embedding on Ray actors,
    and with a keep fraction the per-class clustering as Ray tasks; written and recorded in the job."""
    seconds: dict[str, float] = {}
    ds = _timed(seconds, "decode for the embedding network", lambda: decoded_dataset(
        source, hashed, address=address, num_cpus=num_cpus, max_images=train_max, on_progress=on_progress))
    model, info = _timed(seconds, "embedding network", lambda: trained_classifier(ds, embed_cfg, on_progress))
    vectors = _timed(seconds, "embed on Ray", lambda: embed_source(source, out, (model, info), address=address,
                                                                   num_cpus=num_cpus))
    record = {k: v for k, v in info.items() if k not in ("mean", "std")}
    pool = int((hashed.split == TRAIN).sum())
    if keep_fraction is None:
        path = write_results(out, hashed, "embeddings", embedding=vectors)
        update_job(out, embedding=record)
        return SemanticStep(vectors.shape, record, pool, None, None, None, path, seconds)
    dendro = _timed(seconds, "dendrograms on Ray", lambda: dendrograms_ray(
        vectors, hashed.labels, hashed.split == TRAIN, address=address, num_cpus=num_cpus))
    sel = semantic_selection(dendro, vectors, keep_fraction=keep_fraction)
    kept = sel.keep | ~sel.pool
    reasons = ["kept" if k else f"redundant to {hashed.ids[r]} at cosine {d:.4f}"
               for k, r, d in zip(kept, sel.representative, np.nan_to_num(sel.distance))]
    path = write_results(out, hashed, "semantic", cluster=sel.group, kept=kept, reason=reasons, embedding=vectors)
    threshold = sel.params["threshold"]
    update_job(out, embedding=record, semantic={"keep_fraction": keep_fraction, "kept": len(sel.kept),
                                                "removed": len(sel.removed), "threshold": threshold})
    return SemanticStep(vectors.shape, record, pool, len(sel.kept), len(sel.removed), threshold, path, seconds)
