"""A result folder of `python -m core scale`, opened as a Dataset the app browses like any other.

The Ray job already hashed (and, with its semantic step, embedded) every image. Opening the folder
stores those results in the cache under the very keys the local pipeline uses (the hashes by their
config, the embedding as this dataset's trained embedding), so every page and command reads them
as it reads its own results and never asks where they came from. The dataset reads pixels only for
the images a page shows, from where the job found them: a file of an image folder, a row of a
Parquet file, a member of a WebDataset tar. Nothing is decoded up front, so a folder of millions of
images opens in the time it takes to read its Parquet columns; a step that needs every pixel says
what to run instead.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.data import cache
from core.data.datasets import (
    Dataset,
    DatasetError,
    Skipped,
    decode_image,
    fingerprint_arrays,
    register_source,
)
from core.data.shards import ScaleError, read_location
from core.data.types import Images, ProgressFn, report
from core.features.embedding import EmbedConfig, store_embedding
from core.features.hashing import HashConfig, hash_key
from core.pipelines.result_folder import read_hashes, read_job
from core.selections.candidates import store_part

log = logging.getLogger("redex.results")

EMBEDDING_FILES = ("semantic.parquet", "embeddings.parquet")  # the newest one holding embeddings is used


class SourceImages:
    """(N, H, W, 3) uint8 images read on demand from their locations, decoded at the job's size.

    An image that cannot be read any more (moved, changed, corrupt) becomes a grey tile and is
    listed in `unreadable` with the reason, so a page still draws and says what went wrong.
    """

    def __init__(self, locations: list[str], size: tuple[int, int]) -> None:
        self.locations = locations
        self.size = size
        self.shape = (len(locations), size[0], size[1], 3)
        self.unreadable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, index: Any) -> Images:
        if isinstance(index, (int, np.integer)):
            return self._one(int(index))
        rows = list(range(len(self))[index]) if isinstance(index, slice) else np.asarray(index).reshape(-1).tolist()
        if rows and isinstance(rows[0], (bool, np.bool_)):
            rows = np.flatnonzero(rows).tolist()
        out = np.zeros((len(rows), *self.shape[1:]), np.uint8)
        with ThreadPoolExecutor(8) as pool:  # Pillow releases the GIL while decoding
            for k, img in enumerate(pool.map(self._one, rows)):
                out[k] = img
        return out

    def _one(self, i: int) -> Images:
        try:
            arr, _ = decode_image(read_location(self.locations[i]), self.size)
            return arr
        except (ValueError, OSError) as exc:
            self.unreadable[i] = str(exc)
            log.warning("cannot read %s: %s", self.locations[i], exc)
            return np.full(self.shape[1:], 128, np.uint8)


def results_version(folder: str | Path) -> str:
    """Changes whenever a job step finishes in `folder` (each step rewrites job.json): a memo key for apps."""
    try:
        st = (Path(folder).expanduser() / "job.json").stat()
    except OSError:
        return "absent"
    return f"{st.st_mtime_ns}-{st.st_size}"


def open_results(folder: str | Path, on_progress: ProgressFn | None = None) -> Dataset:
    """The Dataset of a `core scale` result folder; DatasetError says what is missing or stale."""
    out = Path(folder).expanduser().resolve()
    try:
        job = read_job(out)
    except ScaleError as exc:
        raise DatasetError(str(exc)) from None
    if not job:
        raise DatasetError(f"{out} is not a result folder of `python -m core scale` (no job.json there): run "
                           "`python -m core scale duplicates --source ... --out FOLDER` first")
    report(on_progress, "read hashes", 0, 2)
    try:
        hashed = read_hashes(out, tuple(job["classes"]))
    except ScaleError as exc:
        raise DatasetError(f"{exc}: the job has not hashed anything yet") from None
    cfg = HashConfig(**job["hash"])
    vectors = _embeddings(out, hashed.ids)
    report(on_progress, "read embeddings", 2, 2)
    labels, split = hashed.labels, hashed.split
    ids = np.array(hashed.ids)
    parts: list[NDArray[Any]] = [hashed.codes, labels, split, ids]
    if vectors is not None:
        parts.append(vectors)
    fp = fingerprint_arrays(*parts, extra=json.dumps([job["source"], job["hash"], job["classes"]]))
    kind, _, source_path = str(job["source"]).partition(":")  # stored resolved by the job
    hint = (f"run `python -m core scale semantic --source {job['source']} --out {out}` to add the embeddings"
            if vectors is None else f"run `python -m core scale` on the cluster (source {job['source']})")
    root = source_path if kind == "imagefolder" else None
    ds = Dataset(f"scale:{out}", SourceImages(hashed.paths, (int(job["size"][0]), int(job["size"][1]))), labels,
                 split, tuple(job["classes"]), ids, hashed.sizes, fp, root=root,
                 skipped=tuple(Skipped(str(p), str(r)) for p, r in hashed.skipped), origin=str(job["source"]),
                 job=job, hint=hint)
    cache.cached_arrays(hash_key(fp, cfg), lambda: {"codes": hashed.codes})
    if vectors is not None:
        store_embedding(ds, EmbedConfig(), vectors, {"model": "trained", **job.get("embedding", {}),
                                                     "computed_by": "Ray job"})
    for part in sorted((out / "candidates").glob("candidates*.npz")):  # `core scale candidates`: under their keys
        try:
            store_part(part.stem, cache.read_npz(part))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("candidates %s unreadable (%s): the pair score needs them recomputed", part.name, exc)
    return ds


def _embeddings(out: Path, ids: list[str]) -> NDArray[np.float32] | None:
    """The job's embedding vectors in source order, or None; stale files (other ids) are refused."""
    import pyarrow.parquet as pq

    present = [out / name for name in EMBEDDING_FILES if (out / name).exists()]
    for path in sorted(present, key=lambda f: f.stat().st_mtime_ns, reverse=True):
        table = pq.read_table(path, columns=["id", "embedding"]) if "embedding" in pq.read_schema(
            path).names else None
        if table is None:
            continue
        if table.column("id").to_pylist() != ids:
            raise DatasetError(f"{path} was written for other images than the hashes in {out / 'hashes'}: rerun "
                               "`python -m core scale semantic` with the same --source and --out")
        col = table.column("embedding").combine_chunks()
        width = col.type.list_size
        return np.asarray(col.values.to_numpy(zero_copy_only=False), np.float32).reshape(-1, width)
    return None


register_source("scale", lambda path, on_progress: open_results(path, on_progress=on_progress))
