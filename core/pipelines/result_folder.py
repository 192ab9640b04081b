"""A result folder of `python -m core scale`: its job record, its hash shards and its result tables.

`job.json` records the source, the hash and each finished step with its figures, and is
written atomically; a folder holding another source's job is refused, never mixed. The result
tables are plain Parquet (id, path, class, split, hash and each step's columns).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.data.datasets import SPLIT_NAMES
from core.data.shards import ScaleError, parse_source
from core.features.hashing import HashConfig

JOB_FORMAT = 2  # job.json and the Parquet columns; a result folder of another format is refused, not misread

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

def start_job(out: Path, spec: str, cfg: HashConfig, size: tuple[int, int], classes: tuple[str, ...]) -> None:
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
    write_table_atomic(table, path)
    return path

def write_table_atomic(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
