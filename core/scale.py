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
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.datasets import SPLIT_NAMES, TEST, TRAIN, Dataset, auto_size, decode_image, scan_folder
from core.hashing import HashConfig, hash_images
from core.types import ProgressFn, report

log = logging.getLogger("redex.scale")

JOB_FORMAT = 2  # job.json and the Parquet columns; a result folder of another format is refused, not misread
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
            # "local": always a new instance, never a cluster `ray start` left running on this machine
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env=env)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        hint = (" (a cluster with token authentication, the default of `ray start` since Ray 2.59, needs "
                "RAY_AUTH_MODE=token here and its token, from `ray get-auth-token` on the head, in "
                "~/.ray/auth_token or RAY_AUTH_TOKEN; on a node of the cluster, --address auto finds both)"
                ) if address else ""
        raise ScaleError(f"cannot reach a Ray cluster at {address or 'a new local instance'}: {exc}{hint}") from None
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


def read_shard(shard: Shard) -> list[tuple[str, str, int, bytes | str, str]]:
    """(id, class, split, bytes or file path, location) for every item of a shard, in a fixed order.

    The location names where the image lives (a file, 'FILE.parquet#ROW' or 'FILE.tar#MEMBER'),
    so an app browsing the results can read one image back without the rest (read_location).
    """
    if shard.kind == "imagefolder":
        return [(rel, cls, split, p, p) for rel, cls, split in shard.items for p in [os.path.join(shard.path, rel)]]
    if shard.kind == "parquet":
        table = _parquet_rows(shard.path, shard.start, shard.stop).to_pylist()
        out = []
        for k, r in enumerate(table):
            img = r["image"]["bytes"] if isinstance(r["image"], dict) else r["image"]
            split = SPLIT_NAMES.index(r["split"]) if r.get("split") in SPLIT_NAMES else TRAIN
            row = shard.start + k
            out.append((str(r.get("id") or f"{Path(shard.path).name}/{row}"), str(r["label"]), split, img,
                        f"{shard.path}#{row}"))
        return out
    split = TEST if Path(shard.path).name.startswith("test") else TRAIN
    members: dict[str, dict[str, tuple[str, bytes]]] = {}
    with tarfile.open(shard.path) as tf:
        for m in tf.getmembers():
            if m.isfile():
                key, _, ext = m.name.rpartition(".")
                members.setdefault(key, {})[ext.lower()] = (m.name, tf.extractfile(m).read())  # type: ignore[union-attr]
    out_w: list[tuple[str, str, int, bytes | str, str]] = []
    for key in sorted(members):
        parts = members[key]
        img = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
        if img is not None and "cls" in parts:
            out_w.append((key, parts["cls"][1].decode().strip(), split, img[1], f"{shard.path}#{img[0]}"))
    return out_w


def read_location(location: str) -> bytes | str:
    """The encoded image at a location written by read_shard: a file path, or its bytes from Parquet or tar."""
    base, sep, row = location.rpartition("#")
    if sep and base.endswith(".parquet") and row.isdigit():
        return _parquet_row(base, int(row))
    cut = location.find(".tar#")  # a member name may itself hold '#'
    if cut >= 0:
        base, name = location[: cut + 4], location[cut + 5 :]
        st = os.stat(base)
        where = _tar_members(base, st.st_mtime_ns, st.st_size).get(name)
        if where is None:
            raise OSError(f"{name} is not a file in {base}")
        with open(base, "rb") as f:
            f.seek(where[0])
            return f.read(where[1])
    return location


@lru_cache(maxsize=64)
def _tar_members(path: str, mtime_ns: int, size: int) -> dict[str, tuple[int, int]]:
    """name -> (data offset, size) of a tar's files, read once per file version (its headers only)."""
    with tarfile.open(path) as tf:
        return {m.name: (m.offset_data, m.size) for m in tf.getmembers() if m.isfile()}


def _parquet_row(path: str, row: int) -> bytes:
    """One row's image bytes, reading only the row group that holds it (kept for the next rows asked)."""
    st = os.stat(path)
    starts = _row_group_starts(path, st.st_mtime_ns, st.st_size)
    g = int(np.searchsorted(starts, row, side="right")) - 1
    if row < 0 or g < 0 or g >= len(starts) - 1:
        raise OSError(f"{path} has no row {row}")
    value = _row_group_images(path, st.st_mtime_ns, st.st_size, g)[row - int(starts[g])].as_py()
    return bytes(value["bytes"] if isinstance(value, dict) else value)


def _parquet_rows(path: str, start: int, stop: int) -> Any:
    """Rows [start, stop) of a Parquet file, reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    st = os.stat(path)
    starts = _row_group_starts(path, st.st_mtime_ns, st.st_size)
    first, last = (int(np.searchsorted(starts, r, side="right")) - 1 for r in (start, stop - 1))
    table = pq.ParquetFile(path).read_row_groups(list(range(first, last + 1)))
    return table.slice(start - int(starts[first]), stop - start)


@lru_cache(maxsize=64)
def _row_group_starts(path: str, mtime_ns: int, size: int) -> NDArray[np.int64]:
    """First row of each row group, and the row count at the end (from the file's footer)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return np.concatenate([[0], np.cumsum([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])])


@lru_cache(maxsize=4)
def _row_group_images(path: str, mtime_ns: int, size: int, group: int) -> Any:
    """The image column of one row group: thumbnails of neighbouring rows cost one read."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read_row_group(group, columns=["image"]).column("image")


def first_size(shards: list[Shard]) -> tuple[int, int]:
    """The common decode size, by the single-machine rule (the first readable image's size)."""
    for shard in shards:
        for _, _, _, src, _ in read_shard(shard):
            try:
                _, (h, w) = decode_image(src, None)
            except (ValueError, OSError):
                continue
            return auto_size(h, w)
    raise ScaleError("no readable image in the source")


# --- shard work (runs on Ray workers) ------------------------------------------------------------------


def decode_shard(shard: Shard, size: tuple[int, int]) -> tuple[list[tuple[str, str, int, str]], NDArray[np.uint8],
                                                                NDArray[np.int32], list[tuple[str, str]]]:
    """Decode a shard: kept (id, class, split, location), images, original sizes, (id, reason) for bad ones."""
    meta, images, sizes, bad = [], [], [], []
    for ident, cls, split, src, location in read_shard(shard):
        try:
            arr, own = decode_image(src, size)
        except (ValueError, OSError) as exc:
            bad.append((ident, str(exc)))
            continue
        meta.append((ident, cls, split, location))
        images.append(arr)
        sizes.append(own)
    stack = np.stack(images) if images else np.zeros((0, *size, 3), np.uint8)
    return meta, stack, np.array(sizes, np.int32).reshape(-1, 2), bad


def _write_atomic(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _test_kill_point(step: str, index: int, out: Path) -> None:
    """Fault injection for the tests: REDEX_TEST_KILL=STEP:SHARD makes this worker die once, mid-job."""
    if os.environ.get("REDEX_TEST_KILL") == f"{step}:{index}":
        marker = out / f"killed-{step}-{index}"
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)


def hash_shard(shard: Shard, size: tuple[int, int], cfg: HashConfig, out_dir: str) -> dict[str, Any]:
    """Decode and hash one shard into out_dir/hashes/shard-NNNNN.parquet (skipped if already there)."""
    import pyarrow as pa

    path = Path(out_dir) / "hashes" / f"shard-{shard.index:05d}.parquet"
    if path.exists():
        return {"shard": shard.index, "written": False}
    _test_kill_point("hash", shard.index, Path(out_dir))
    meta, images, sizes, bad = decode_shard(shard, size)
    codes = hash_images(images, cfg) if len(images) else np.zeros((0, cfg.bits // 8), np.uint8)
    table = pa.table({"id": [m[0] for m in meta], "path": [m[3] for m in meta], "class": [m[1] for m in meta],
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
    paths: list[str]  # where each image lives (read_location reads it back)
    labels: NDArray[np.int64]
    split: NDArray[np.int8]
    sizes: NDArray[np.int32]
    codes: NDArray[np.uint8]
    skipped: list[tuple[str, str]]


def read_job(out: Path) -> dict[str, Any]:
    """The job record of a result folder ({} for a new one); ScaleError for another format."""
    path = Path(out) / "job.json"
    if not path.exists():
        return {}
    try:
        job: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ScaleError(f"{path} is unreadable ({exc}): choose a new --out folder") from None
    if job.get("format") != JOB_FORMAT:
        raise ScaleError(f"{out} was written by another version of this tool (format {job.get('format')}, this one "
                         f"writes {JOB_FORMAT}): choose a new --out folder")
    return job


def update_job(out: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into out/job.json, atomically (a step adds its own record, keeps the others)."""
    job = {**read_job(out), **fields, "format": JOB_FORMAT}
    path = Path(out) / "job.json"
    tmp = path.with_name(f"job.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(job, indent=1))
    os.replace(tmp, path)
    return job


def job_summary(job: dict[str, Any]) -> str:
    """One line of what a job computed, for people: its hash, and each finished step with its figures."""
    h = job.get("hash", {})
    parts = [f"{h.get('method', '?')}{h.get('hash_size', '')} hashes"]
    if "duplicates" in job:
        d = job["duplicates"]
        parts.append(f"duplicates at {d['threshold']} bits remove {d['removed']:,} ({d['leaked_test_images']:,} "
                     "test images leaked)")
    if "embedding" in job:
        e = job["embedding"]
        parts.append(f"{e.get('arch', e.get('model', '?'))} embedding")
    if "semantic" in job:
        s = job["semantic"]
        parts.append(f"semantic keep {s['keep_fraction']} removes {s['removed']:,}")
    return "; ".join(parts)


def _start_job(out: Path, spec: str, cfg: HashConfig, size: tuple[int, int], classes: tuple[str, ...]) -> None:
    """Record the job; a folder holding another source's or another hash's shards is refused, never mixed."""
    kind, path = parse_source(spec)
    mine = {"source": f"{kind}:{path}", "hash": asdict(cfg), "size": list(size), "classes": list(classes)}
    job = read_job(out)
    clash = [k for k in ("source", "hash", "size", "classes") if k in job and job[k] != mine[k]]
    if clash:
        raise ScaleError(f"{out} holds results of another job (its {', '.join(clash)} differ): choose a new --out "
                         "folder, or remove that one")
    out.mkdir(parents=True, exist_ok=True)
    update_job(out, **mine)


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
    _start_job(out, spec, cfg, size, classes)
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


def read_hashes(out: Path, classes: tuple[str, ...]) -> Hashed:
    """Every hash shard of a result folder, in source order, with the files skipped on the way."""
    import pyarrow.parquet as pq

    files = sorted((out / "hashes").glob("shard-*.parquet"))
    table = pq.read_table(files) if files else None
    if table is None or table.num_rows == 0:
        raise ScaleError(f"no hashes under {out / 'hashes'}")
    col = table.to_pydict()
    label_of = {c: k for k, c in enumerate(classes)}
    bad: list[tuple[str, str]] = []
    for f in sorted((out / "hashes").glob("skipped-*.json")):
        bad += [(str(x[0]), str(x[1])) for x in json.loads(f.read_text())]
    return Hashed(classes, col["id"], col["path"], np.array([label_of[c] for c in col["class"]], np.int64),
                  np.array(col["split"], np.int8), np.stack([col["height"], col["width"]], axis=1).astype(np.int32),
                  np.array([list(bytes.fromhex(h)) for h in col["hash"]], np.uint8), bad)


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

    from core.neighbors import run_parts

    pairs = run_parts(words, plan, parts, radius)
    return pairs, os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def search_ray(codes: NDArray[np.uint8], radius: int, *, address: str | None = None,
               num_cpus: int | None = None, pieces: int = 8) -> RaySearch:
    """find_pairs_ray, with the measured peak memory of every worker that ran a part."""
    from core.neighbors import check_radius, merge, partition, plan_search, to_words

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


def decoded_dataset(spec: str, hashed: Hashed, *, address: str | None = None, num_cpus: int | None = None,
                    max_images: int = 200_000, shard_size: int = SHARD_SIZE,
                    on_progress: ProgressFn | None = None) -> Dataset:
    """The images the embedding network trains on, decoded into memory on the driver.

    An image folder is opened with the single-machine loader (its decode cache, so the network
    is the very one `python -m core embed` trains); Parquet and WebDataset shards are decoded as
    Ray tasks. Above `max_images`, an even spread of shards is taken, so every part of the source
    (and with sorted sources, every class) is represented.
    """
    from core.datasets import load_image_folder, make_dataset

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
                _test_kill_point("embed", shard.index, self.out)
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
        compute=ray.data.ActorPoolStrategy(size=max(1, min(actors, len(items)))), num_gpus=gpus)
    for _ in ds.iter_rows():
        pass
    return np.concatenate([np.load(out / "embeddings" / f"shard-{s.index:05d}.npy") for s in shards])


def write_results(out: Path, hashed: Hashed, name: str, **columns: Any) -> Path:
    """out/NAME.parquet: (id, path, class, split, hash) and the step's own columns, written atomically.

    `columns` are per-image sequences in source order (group, cluster, kept, reason, embedding);
    a 2-D float array becomes a fixed-size list column that pandas and pyarrow read as is.
    """
    import pyarrow as pa

    table = pa.table({"id": hashed.ids, "path": hashed.paths, "class": [hashed.classes[k] for k in hashed.labels],
                      "split": [SPLIT_NAMES[s] for s in hashed.split], "hash": [bytes(c).hex() for c in hashed.codes]})
    for key, value in columns.items():
        if isinstance(value, np.ndarray) and value.ndim == 2:
            flat = pa.array(np.ascontiguousarray(value, np.float32).reshape(-1))
            table = table.append_column(key, pa.FixedSizeListArray.from_arrays(flat, value.shape[1]))
        else:
            table = table.append_column(key, pa.array(value))
    path = out / f"{name}.parquet"
    _write_atomic(table, path)
    return path
