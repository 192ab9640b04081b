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
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.datasets import SPLIT_NAMES, TEST, TRAIN, auto_size, decode_image, scan_folder
from core.hashing import HashConfig, hash_images
from core.types import ProgressFn, report

log = logging.getLogger("redex.scale")

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
SHARD_SIZE = 5_000


class ScaleError(RuntimeError):
    """Ray is missing or unreachable, or a source cannot be read; the message says what to do."""


@dataclass(frozen=True)
class Shard:
    """One unit of distributed work: where its images are and which ids it holds."""

    index: int
    kind: str  # imagefolder | parquet | webdataset
    path: str  # the folder root, the Parquet file or the tar file
    items: tuple[tuple[str, str, int], ...] = ()  # imagefolder: (relative path, class, split)
    start: int = 0  # parquet: row range
    stop: int = 0


# --- connecting ---------------------------------------------------------------------------------


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """ray, initialised: a local Ray on this machine, or the cluster at `address`."""
    try:
        import ray
    except ImportError:
        raise ScaleError("Ray is not installed: pip install 'ray[data]==2.60.0' (listed in requirements.txt)") from None
    if ray.is_initialized():
        return ray
    if address and address != "auto":
        _reachable(address)
    core_dir = str(Path(__file__).resolve().parent)
    env = {"py_modules": [core_dir]} if address else {"env_vars": {"PYTHONPATH": str(Path(core_dir).parent)}}
    try:
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, runtime_env=env)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise ScaleError(f"cannot reach a Ray cluster at {address or 'a new local instance'}: {exc}") from None
    from ray.data import DataContext

    DataContext.get_current().execution_options.preserve_order = True
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (ray.init would keep retrying)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ScaleError(f"cannot reach a Ray cluster at {address}: {exc}") from None


# --- sources and shards ------------------------------------------------------------------------------


def parse_source(spec: str) -> tuple[str, str]:
    kind, _, path = spec.partition(":")
    if kind not in ("imagefolder", "parquet", "webdataset") or not path:
        raise ScaleError(f"unknown source {spec!r}: use imagefolder:PATH, parquet:PATH or webdataset:PATH")
    if not Path(path).expanduser().exists():
        raise ScaleError(f"{path} not found")
    return kind, str(Path(path).expanduser().resolve())


def _files(path: str, suffix: str) -> list[str]:
    p = Path(path)
    return [str(p)] if p.is_file() else sorted(str(f) for f in p.rglob(f"*{suffix}"))


def list_shards(spec: str, shard_size: int = SHARD_SIZE) -> tuple[tuple[str, ...], list[Shard], list[tuple[str, str]]]:
    """The classes, the shards, and files skipped while listing (image folders)."""
    kind, path = parse_source(spec)
    if kind == "imagefolder":
        entries, classes, skipped = scan_folder(Path(path))
        items = [(e.rel, classes[e.label], e.split) for e in entries]
        shards = [Shard(k, kind, path, tuple(items[lo: lo + shard_size]))
                  for k, lo in enumerate(range(0, len(items), shard_size))]
        return classes, shards, [(s.path, s.reason) for s in skipped]
    if kind == "parquet":
        import pyarrow.parquet as pq

        shards, labels = [], set()
        for f in _files(path, ".parquet"):
            n = pq.ParquetFile(f).metadata.num_rows
            labels |= {str(x) for x in pq.read_table(f, columns=["label"]).column("label").to_pylist()}
            shards += [Shard(len(shards) + k, kind, f, (), lo, min(n, lo + shard_size))
                       for k, lo in enumerate(range(0, n, shard_size))]
        return _sorted_labels(labels), shards, []
    tars = _files(path, ".tar")
    labels = set()
    for t in tars:
        with tarfile.open(t) as tf:
            labels |= {tf.extractfile(m).read().decode().strip() for m in tf.getmembers()  # type: ignore[union-attr]
                       if m.name.endswith(".cls")}
    return _sorted_labels(labels), [Shard(k, kind, t) for k, t in enumerate(tars)], []


def _sorted_labels(labels: set[str]) -> tuple[str, ...]:
    return tuple(sorted(labels, key=lambda s: (0, int(s)) if s.isdigit() else (1, s)))


def read_shard(shard: Shard) -> list[tuple[str, str, int, bytes | str]]:
    """(id, class, split, bytes or file path) for every item of a shard, in a fixed order."""
    if shard.kind == "imagefolder":
        return [(rel, cls, split, os.path.join(shard.path, rel)) for rel, cls, split in shard.items]
    if shard.kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(shard.path).slice(shard.start, shard.stop - shard.start).to_pylist()
        out = []
        for k, r in enumerate(table):
            img = r["image"]["bytes"] if isinstance(r["image"], dict) else r["image"]
            split = SPLIT_NAMES.index(r["split"]) if r.get("split") in SPLIT_NAMES else TRAIN
            out.append((str(r.get("id") or f"{Path(shard.path).name}/{shard.start + k}"), str(r["label"]), split, img))
        return out
    split = TEST if Path(shard.path).name.startswith("test") else TRAIN
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard.path) as tf:
        for m in tf.getmembers():
            if m.isfile():
                key, _, ext = m.name.rpartition(".")
                members.setdefault(key, {})[ext.lower()] = tf.extractfile(m).read()  # type: ignore[union-attr]
    out = []
    for key in sorted(members):
        parts = members[key]
        img = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
        if img is not None and "cls" in parts:
            out.append((key, parts["cls"].decode().strip(), split, img))
    return out


def first_size(shards: list[Shard]) -> tuple[int, int]:
    """The common decode size, by the single-machine rule (the first readable image's size)."""
    for shard in shards:
        for _, _, _, src in read_shard(shard):
            try:
                _, (h, w) = decode_image(src, None)
            except (ValueError, OSError):
                continue
            return auto_size(h, w)
    raise ScaleError("no readable image in the source")


# --- shard work (runs on Ray workers) ------------------------------------------------------------------


def decode_shard(shard: Shard, size: tuple[int, int]) -> tuple[list[tuple[str, str, int]], NDArray[np.uint8],
                                                                NDArray[np.int32], list[tuple[str, str]]]:
    """Decode a shard: kept (id, class, split), images, original sizes, and (id, reason) for bad ones."""
    meta, images, sizes, bad = [], [], [], []
    for ident, cls, split, src in read_shard(shard):
        try:
            arr, own = decode_image(src, size)
        except (ValueError, OSError) as exc:
            bad.append((ident, str(exc)))
            continue
        meta.append((ident, cls, split))
        images.append(arr)
        sizes.append(own)
    stack = np.stack(images) if images else np.zeros((0, *size, 3), np.uint8)
    return meta, stack, np.array(sizes, np.int32).reshape(-1, 2), bad


def _write_atomic(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def hash_shard(shard: Shard, size: tuple[int, int], cfg: HashConfig, out_dir: str) -> dict[str, Any]:
    """Decode and hash one shard into out_dir/hashes/shard-NNNNN.parquet (skipped if already there)."""
    import pyarrow as pa

    path = Path(out_dir) / "hashes" / f"shard-{shard.index:05d}.parquet"
    if path.exists():
        return {"shard": shard.index, "written": False}
    if os.environ.get("REDEX_TEST_KILL_SHARD") == str(shard.index):  # tests: die once, mid-job
        marker = Path(out_dir) / f"killed-{shard.index}"
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)
    meta, images, sizes, bad = decode_shard(shard, size)
    codes = hash_images(images, cfg) if len(images) else np.zeros((0, cfg.bits // 8), np.uint8)
    table = pa.table({"id": [m[0] for m in meta], "class": [m[1] for m in meta],
                      "split": pa.array([m[2] for m in meta], pa.int8()),
                      "height": sizes[:, 0].tolist(), "width": sizes[:, 1].tolist(),
                      "hash": [bytes(c).hex() for c in codes], "shard": [shard.index] * len(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(table, path)
    if bad:
        (path.parent / f"skipped-{shard.index:05d}.json").write_text(json.dumps(bad))
    return {"shard": shard.index, "written": True}


# --- driver-side steps ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Hashed:
    """Every hashed image, in source order: ids, labels, splits, sizes and codes."""

    classes: tuple[str, ...]
    ids: list[str]
    labels: NDArray[np.int64]
    split: NDArray[np.int8]
    sizes: NDArray[np.int32]
    codes: NDArray[np.uint8]
    skipped: list[tuple[str, str]]


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
    (out / "hashes").mkdir(parents=True, exist_ok=True)
    (out / "job.json").write_text(json.dumps({"source": spec, "hash": asdict(cfg), "size": size}))
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
    return read_hashes(out, classes, skipped)


def read_hashes(out: Path, classes: tuple[str, ...], skipped: list[tuple[str, str]] | None = None) -> Hashed:
    import pyarrow.parquet as pq

    files = sorted((out / "hashes").glob("shard-*.parquet"))
    table = pq.read_table(files) if files else None
    if table is None or table.num_rows == 0:
        raise ScaleError(f"no hashes under {out / 'hashes'}")
    col = table.to_pydict()
    label_of = {c: k for k, c in enumerate(classes)}
    bad = list(skipped or [])
    for f in sorted((out / "hashes").glob("skipped-*.json")):
        bad += [tuple(x) for x in json.loads(f.read_text())]
    return Hashed(classes, col["id"], np.array([label_of[c] for c in col["class"]], np.int64),
                  np.array(col["split"], np.int8), np.stack([col["height"], col["width"]], axis=1).astype(np.int32),
                  np.array([list(bytes.fromhex(h)) for h in col["hash"]], np.uint8), bad)


def find_pairs_ray(codes: NDArray[np.uint8], radius: int, *, address: str | None = None,
                   num_cpus: int | None = None, pieces: int = 8) -> Any:
    """The exact search, its plan cut into disjoint parts run as Ray tasks: the same pairs as find_pairs."""
    from core.neighbors import check_radius, merge, partition, plan_search, run_parts, to_words

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
    task = ray.remote(max_retries=3)(run_parts)
    ref = ray.put(words)
    return merge(ray.get([task.remote(ref, plan, g, radius) for g in groups if g]))


def dendrograms_ray(vectors: NDArray[np.float32], labels: NDArray[np.int64], pool: NDArray[np.bool_], cfg: Any = None,
                    *, address: str | None = None, num_cpus: int | None = None) -> Any:
    """build_dendrograms with one Ray task per class; the same pieces as the single-machine path."""
    from core.semantic import Dendrograms, Piece, SemanticConfig, build_dendrograms

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


class ShardEmbedder:
    """A Ray Data actor: builds the trained network once, then embeds whole shards.

    One actor per worker (per GPU when there are GPUs); each shard's vectors are written to
    out/embeddings/shard-NNNNN.npy under a temporary name and renamed, so a rerun skips them.
    """

    def __init__(self, state: dict[str, Any], arch: str, classes: int, size: tuple[int, int], out: str) -> None:
        import torch

        from core.device import pick_device
        from core.models import build_model
        from core.training import arrays_to_state

        self.device = pick_device()
        self.model = arrays_to_state(build_model(arch, 3, classes, min(size)), state["weights"]).to(self.device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = torch.from_numpy(state["mean"]).to(self.device)
        self.std = torch.from_numpy(state["std"]).to(self.device)
        self.size, self.out = size, Path(out)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from core.training import predict_features, to_tensor

        done = []
        for text in batch["shard"]:
            d = json.loads(text)
            shard = Shard(**{**d, "items": tuple(map(tuple, d["items"]))})
            path = self.out / "embeddings" / f"shard-{shard.index:05d}.npy"
            if not path.exists():
                _, images, _, _ = decode_shard(shard, self.size)
                feats = predict_features(self.model, to_tensor(images, self.device), self.mean, self.std)
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

    `classifier` is (model, info) from core.embedding.trained_classifier: the same network as the
    single-machine embedding, so the vectors agree up to float rounding.
    """
    from core.training import state_to_arrays

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
    gpus = 1 if ray.cluster_resources().get("GPU", 0) else 0
    ds = ray.data.from_items(items).map_batches(
        ShardEmbedder, fn_constructor_args=(state, info["arch"], n_classes, size, str(out)), batch_size=1,
        concurrency=actors, num_gpus=gpus)
    for _ in ds.iter_rows():
        pass
    return np.concatenate([np.load(out / "embeddings" / f"shard-{s.index:05d}.npy") for s in shards])


def write_results(out: Path, hashed: Hashed, group: NDArray[np.int64], keep: NDArray[np.bool_],
                  reasons: list[str], name: str = "duplicates") -> Path:
    """One Parquet file of (id, class, split, hash, group, kept, reason), written atomically."""
    import pyarrow as pa

    table = pa.table({"id": hashed.ids, "class": [hashed.classes[k] for k in hashed.labels],
                      "split": [SPLIT_NAMES[s] for s in hashed.split], "hash": [bytes(c).hex() for c in hashed.codes],
                      "group": group, "kept": keep, "reason": reasons})
    path = out / f"{name}.parquet"
    _write_atomic(table, path)
    return path
