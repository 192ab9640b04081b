"""Sources split into shards, and single images read back by their location.

An image folder is split by files, a Parquet file by row ranges, a WebDataset by its tar files.
Each item carries its location (a file, 'FILE.parquet#ROW' or 'FILE.tar#MEMBER'), so an app
browsing a result folder reads back only the images it shows.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.data.datasets import SPLIT_NAMES, TEST, TRAIN, auto_size, decode_image, scan_folder

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
