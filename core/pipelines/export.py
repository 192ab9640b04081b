"""Manifests and pruned copies: where integer indices become file names again.

Nothing here modifies or deletes a source file. A pruned copy goes to a new (or empty)
folder, each file written to a temporary name and renamed, and the manifest records for every
image of the pool its status, its group, what it was merged into and why.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.data.datasets import SPLIT_NAMES, Dataset
from core.data.types import ProgressFn, report
from core.selections.selection import Selection

FIELDS = ("id", "split", "class", "status", "group", "representative", "distance", "distance_unit", "method", "params",
          "reason")


def manifest_rows(ds: Dataset, sel: Selection) -> list[dict[str, Any]]:
    """One row per pool image: kept or removed, with the reason."""
    params = json.dumps(sel.params, sort_keys=True)
    rows = []
    for i in np.flatnonzero(sel.pool):
        rep = int(sel.representative[i])
        rows.append({
            "id": str(ds.ids[i]),
            "split": SPLIT_NAMES[int(ds.split[i])],
            "class": ds.classes[int(ds.labels[i])],
            "status": "kept" if sel.keep[i] else "removed",
            "group": int(sel.group[i]),
            "representative": str(ds.ids[rep]) if rep >= 0 else "",
            "distance": None if np.isnan(sel.distance[i]) else round(float(sel.distance[i]), 6),
            "distance_unit": sel.unit,
            "method": sel.method,
            "params": params,
            "reason": sel.reason(int(i), ds),
        })
    return rows


def manifest_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def manifest_json(ds: Dataset, sel: Selection, rows: list[dict[str, Any]]) -> str:
    per = sel.per_class(ds.labels, len(ds.classes))
    doc = {
        "dataset": ds.name,
        "fingerprint": ds.fingerprint,
        "method": sel.method,
        "params": sel.params,
        "kept": len(sel.kept),
        "removed": len(sel.removed),
        "per_class": {c: {"kept": int(per["kept"][k]), "removed": int(per["removed"][k])}
                      for k, c in enumerate(ds.classes)},
        "images": rows,
    }
    return json.dumps(doc, indent=1)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _prepare(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise FileExistsError(f"{target} is not empty: choose a new folder, or pass --force to write into it")
    target.mkdir(parents=True, exist_ok=True)


def write_manifest(ds: Dataset, sel: Selection, target: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Write manifest.csv and manifest.json into `target` (new or empty unless `force`)."""
    target = Path(target).expanduser()
    _prepare(target, force)
    rows = manifest_rows(ds, sel)
    csv_path, json_path = target / "manifest.csv", target / "manifest.json"
    _write_text(csv_path, manifest_csv(rows))
    _write_text(json_path, manifest_json(ds, sel, rows))
    return csv_path, json_path


def export_images(ds: Dataset, sel: Selection, target: str | Path, force: bool = False,
                  on_progress: ProgressFn | None = None) -> int:
    """Copy the kept images to `target/images/<split>/<class>/...`; returns how many were written.

    From an image folder the original files are copied byte for byte; other sources are
    written as PNG. The target must be new or empty (unless `force`), and never the source.
    """
    target = Path(target).expanduser().resolve()
    if ds.root and (target == Path(ds.root) or Path(ds.root) in target.parents):
        raise ValueError(f"refusing to export into the source folder {ds.root}: choose a folder outside it")
    kept = sel.kept
    out = target / "images"
    files = ds.root is not None and (ds.name.startswith("imagefolder:") or (ds.origin or "").startswith(
        "imagefolder:"))
    for k, i in enumerate(kept):
        split, cls = SPLIT_NAMES[int(ds.split[i])], ds.classes[int(ds.labels[i])]
        if files and ds.root:  # an image folder, or a Ray result folder whose source is one
            src = Path(ds.root) / str(ds.ids[i])
            dst = out / split / cls / src.name
        else:
            src, dst = None, out / split / cls / f"{Path(str(ds.ids[i])).name}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():  # two kept files with one name in a class: keep both
            dst = dst.with_name(f"{dst.stem}-{int(i)}{dst.suffix}")
        tmp = dst.with_name(dst.name + ".tmp")
        if src is not None:
            shutil.copyfile(src, tmp)
        else:
            img = np.asarray(ds.images[i])
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp, format="PNG")
        os.replace(tmp, dst)
        report(on_progress, "export", k + 1, len(kept))
    return len(kept)


def export(ds: Dataset, sel: Selection, target: str | Path, images: bool = False, force: bool = False,
           on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Manifest (and optionally the kept images) into a new folder; the source is only read."""
    csv_path, json_path = write_manifest(ds, sel, target, force)
    written = export_images(ds, sel, target, force=True, on_progress=on_progress) if images else 0
    return {"csv": str(csv_path), "json": str(json_path), "images": written,
            "kept": len(sel.kept), "removed": len(sel.removed)}
