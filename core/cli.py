"""`python -m core ...`: the same computations as the app, from a terminal.

Long steps show tqdm bars fed by the one progress protocol; every error is one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core import cache
from core.datasets import SOURCES, SPLIT_NAMES, TORCHVISION_SOURCES, Dataset, DatasetError, load_dataset
from core.scale import ScaleError
from core.types import Progress, ProgressFn


class TqdmProgress:
    """Renders Progress reports as one tqdm bar per phase, on stderr."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, p: Progress) -> None:
        from tqdm import tqdm

        bar = self._bars.get(p.phase)
        if bar is None:
            bar = self._bars[p.phase] = tqdm(total=p.total or None, desc=p.phase, file=sys.stderr, leave=False)
        if p.message:
            bar.set_postfix_str(p.message[:40], refresh=False)
        bar.update(p.done - bar.n)  # tqdm throttles the redraws itself
        if p.total and p.done >= p.total:
            bar.close()
            del self._bars[p.phase]


def _timed(label: str, fn: Callable[[], Any], disk_cached: bool = True) -> Any:
    """Run one step, printing its time and (for disk-cached steps) whether it came from the cache."""
    t0, misses = time.perf_counter(), cache.stats.misses
    out = fn()
    status = (" (computed)" if cache.stats.misses > misses else " (from cache)") if disk_cached else ""
    print(f"{label}: {time.perf_counter() - t0:.2f} s{status}")
    return out


def _load(args: argparse.Namespace, progress: ProgressFn) -> Dataset:
    ds: Dataset = _timed("load", lambda: load_dataset(args.dataset, download=args.download,
                                                          image_size=args.image_size, on_progress=progress))
    counts = ds.counts()
    print(f"dataset {ds.name}: {len(ds):,} images {ds.image_shape}, {len(ds.classes)} classes, "
          f"train {sum(counts['train'].values()):,}, test {sum(counts['test'].values()):,}, "
          f"skipped {len(ds.skipped)}")
    for s in ds.skipped[:20]:
        print(f"  skipped {s.path}: {s.reason}")
    if len(ds.skipped) > 20:
        print(f"  ... and {len(ds.skipped) - 20} more skipped files")
    return ds


def cmd_datasets(args: argparse.Namespace, progress: ProgressFn) -> int:
    print("digits            scikit-learn's 8x8 digits (embedded default, no files needed)")
    for name, (_, files) in TORCHVISION_SOURCES.items():
        print(f"{name + ':ROOT':<17} torchvision; expects ROOT/{files} (--download fetches them when online)")
    print("imagefolder:PATH  PATH/<class>/<image> or PATH/{train,test}/<class>/<image>, any Pillow format")
    return 0


def _hash_cfg(args: argparse.Namespace) -> Any:
    from core.hashing import HashConfig

    return HashConfig(args.method, args.hash_size)


def cmd_hash(args: argparse.Namespace, progress: ProgressFn) -> int:
    from core.hashing import dataset_hashes, to_hex

    ds = _load(args, progress)
    cfg = _hash_cfg(args)
    codes = _timed(f"hash {cfg.label}", lambda: dataset_hashes(ds, cfg, progress))
    for i in range(min(5, len(ds))):
        print(f"  {ds.ids[i]}  {to_hex(codes[i : i + 1])[0]}")
    return 0


def _hash_selection(args: argparse.Namespace, ds: Dataset, progress: ProgressFn) -> Any:
    from core.duplicates import build_index, hash_selection, max_radius

    cfg = _hash_cfg(args)
    if not 0 <= args.threshold <= max_radius(cfg.bits):
        raise ValueError(f"--threshold must be between 0 and {max_radius(cfg.bits)} for {cfg.label}")
    index = _timed("index (hashes + pairs)", lambda: build_index(ds, cfg, progress))
    return index, hash_selection(ds, index, args.threshold, args.keep)


def cmd_duplicates(args: argparse.Namespace, progress: ProgressFn) -> int:
    from core.duplicates import SCOPES, exact_groups, groups_at, leaked_test_images

    ds = _load(args, progress)
    index, sel = _hash_selection(args, ds, progress)
    t0 = time.perf_counter()
    result: dict[str, Any] = {}
    for scope in SCOPES:
        groups = groups_at(index, args.threshold, scope, args.keep, ds.sizes)
        result[scope] = groups
        big = int(groups.sizes.max()) if len(groups) else 0
        diam = int(groups.diameter.max()) if len(groups) else 0
        print(f"{scope:>12}: {len(groups):,} groups, {groups.n_images:,} images, largest {big}, "
              f"largest diameter {diam} bits")
    leaked = leaked_test_images(index, args.threshold, ds.split)
    n_test = int((ds.split == 1).sum())
    print(f"train/test leakage: {len(leaked):,} of {n_test:,} test images have a near-duplicate in train")
    print(f"exact pixel duplicates: {len(exact_groups(ds)):,} groups")
    per = sel.per_class(ds.labels, len(ds.classes))
    print(f"dedup (within class, train): removes {len(sel.removed):,} of {int(sel.pool.sum()):,} "
          f"({100 * (1 - sel.kept_fraction):.2f}%), cut in {1000 * (time.perf_counter() - t0):.0f} ms")
    for k, c in enumerate(ds.classes):
        total = per["kept"][k] + per["removed"][k]
        print(f"  {c:>12}: removes {per['removed'][k]:>6,} of {total:,}")
    within = result["within-class"]
    for g in range(min(args.show, len(within))):
        mem = within.group(g)
        names = ", ".join(f"{ds.ids[m]}{'*' if m == within.keep[g] else ''}" for m in mem[:6])
        print(f"  group {g}: {len(mem)} images, diameter {within.diameter[g]}: {names}{' ...' if len(mem) > 6 else ''}")
    return 0


def _selection(args: argparse.Namespace, ds: Dataset, progress: ProgressFn) -> Any:
    if args.by == "hash":
        return _hash_selection(args, ds, progress)[1]
    return _semantic_selection(args, ds, progress)[2]


def _embed_cfg(args: argparse.Namespace) -> Any:
    from core.embedding import EmbedConfig

    return EmbedConfig(model=args.embedding, epochs=args.epochs, seed=args.seed)


def _semantic_selection(args: argparse.Namespace, ds: Dataset, progress: ProgressFn) -> tuple[Any, Any, Any]:
    """(embeddings, dendrograms, selection) at --keep-fraction (default 0.9) or --distance."""
    from core.semantic import semantic_index, semantic_selection

    keep = 0.9 if args.keep_fraction is None and args.distance is None else args.keep_fraction
    emb, dendro = _timed("embeddings + dendrograms", lambda: semantic_index(ds, _embed_cfg(args), on_progress=progress))
    sel = semantic_selection(dendro, emb.vectors, threshold=args.distance, keep_fraction=keep,
                             per_class=args.per_class, policy=args.policy, seed=args.seed)
    return emb, dendro, sel


def cmd_embed(args: argparse.Namespace, progress: ProgressFn) -> int:
    from core.embedding import embed

    ds = _load(args, progress)
    emb = _timed("embed", lambda: embed(ds, _embed_cfg(args), download=args.download, on_progress=progress))
    print(f"embeddings: {emb.vectors.shape[0]:,} x {emb.vectors.shape[1]}; " + json.dumps(emb.info, sort_keys=True))
    return 0


def cmd_semantic(args: argparse.Namespace, progress: ProgressFn) -> int:
    from core.semantic import semantic_selection

    ds = _load(args, progress)
    emb, dendro, sel = _semantic_selection(args, ds, progress)
    print(f"embedding: {emb.info.get('model')} ({json.dumps(emb.info, sort_keys=True)})")
    for c, route in sorted(dendro.routes.items()):
        if not route.startswith("exact"):
            print(f"  class {ds.classes[c]}: {route}")
    t = sel.params["threshold"]
    print(f"semantic subset: keeps {len(sel.kept):,} of {int(sel.pool.sum()):,} ({100 * sel.kept_fraction:.2f}%), "
          f"removes {len(sel.removed):,}; cosine threshold {t}")
    per = sel.per_class(ds.labels, len(ds.classes))
    for k, c in enumerate(ds.classes):
        print(f"  {c:>12}: kept {per['kept'][k]:>6,}  removed {per['removed'][k]:>6,}")
    for other in (0.05, 0.1, 0.2):
        t0 = time.perf_counter()
        again = semantic_selection(dendro, emb.vectors, threshold=other, policy=args.policy)
        ms = 1000 * (time.perf_counter() - t0)
        print(f"re-cut at cosine distance {other}: keeps {len(again.kept):,} ({100 * again.kept_fraction:.2f}%) "
              f"in {ms:.1f} ms")
    return 0


def cmd_umap(args: argparse.Namespace, progress: ProgressFn) -> int:
    from core.embedding import embed
    from core.projection import UmapConfig, cached_projection

    ds = _load(args, progress)
    emb = _timed("embed", lambda: embed(ds, _embed_cfg(args), on_progress=progress))
    cfg = UmapConfig(n_neighbors=args.neighbors, min_dist=args.min_dist)
    proj = _timed("umap", lambda: cached_projection(emb.vectors, emb.key, cfg, progress))
    print(f"map: {len(proj.xy):,} points, fitted on {proj.fitted_on:,}; x in [{proj.xy[:, 0].min():.2f}, "
          f"{proj.xy[:, 0].max():.2f}], y in [{proj.xy[:, 1].min():.2f}, {proj.xy[:, 1].max():.2f}]")
    return 0


def cmd_experiment(args: argparse.Namespace, progress: ProgressFn) -> int:
    import csv
    import dataclasses
    from pathlib import Path

    from core.experiments import (
        ExperimentConfig,
        budget_recipe,
        estimate_seconds,
        plan,
        run_sweep,
        summarize,
        sweep_image_epochs,
    )

    ds = _load(args, progress)
    recipe = budget_recipe(ds)
    if args.train_epochs:
        recipe = dataclasses.replace(recipe, epochs=args.train_epochs)
    cfg = ExperimentConfig(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                           fractions=tuple(float(f) for f in args.keep.split(",")), seeds=args.seeds, recipe=recipe)
    arms = plan(cfg)
    estimate = estimate_seconds(ds, recipe, sweep_image_epochs(ds, cfg, arms))
    print(f"recipe: {json.dumps(dataclasses.asdict(recipe))}")
    print(f"{len(arms)} arms; estimated {estimate / 60:.1f} min if none is cached")

    def show(r: Any) -> None:
        print(f"  {r.method:>8} keep {r.fraction:.2f} (real {r.kept_fraction:.4f}, {r.n_train:,} images) "
              f"seed {r.seed}: accuracy {100 * r.accuracy:.2f}% in {r.seconds:.1f} s" + (" (cached)" * r.from_cache))

    results = run_sweep(ds, cfg, arms=arms, on_progress=progress, on_result=show)
    rows = summarize(results)
    from core.evidence import differences
    print(f"{'method':>8} {'keep':>5} {'real':>7} {'n':>7} {'seeds':>5} {'accuracy':>16} {'s/run':>7}")
    for r in rows:
        print(f"{r['method']:>8} {r['fraction']:>5.2f} {r['kept_fraction']:>7.4f} {r['n_train']:>7,} {r['seeds']:>5} "
              f"{100 * r['accuracy_mean']:>8.2f} ± {100 * r['accuracy_std']:>5.2f} {r['seconds_mean']:>7.1f}")
    for d in differences(results):
        print(d.sentence())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        doc = {"recipe": dataclasses.asdict(recipe), "dataset": ds.name, "summary": rows,
               "runs": [dataclasses.asdict(r) for r in results]}
        (out / "results.json").write_text(json.dumps(doc, indent=1))
        with open(out / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["method"])
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {out / 'results.csv'} and {out / 'results.json'}")
    return 0


def cmd_evidence(args: argparse.Namespace, progress: ProgressFn) -> int:
    """The paired many-seed sweep; prints each run and the paired verdicts, and rewrites a RESULTS.md section."""
    import shlex
    import time
    from pathlib import Path

    from core.device import pick_device
    from core.embedding import EmbedConfig, embed
    from core.evidence import EvidenceConfig, differences, render, run_evidence, write_section
    from core.experiments import budget_recipe

    ds = _load(args, progress)
    cfg = EvidenceConfig(fractions=tuple(float(f) for f in args.keep.split(",")), hash_fraction=args.hash_keep,
                         seeds=args.seeds)
    recipe = budget_recipe(ds)
    emb = _timed("embedding network + embeddings", lambda: embed(ds, EmbedConfig(), on_progress=progress))
    print(f"embedding: {emb.info.get('arch')}, test accuracy {100 * emb.info.get('test_accuracy', float('nan')):.2f}%")
    t0 = time.perf_counter()

    def show(r: Any) -> None:
        print(f"  seed {r.seed} {r.method:>8} keep {r.fraction:.2f} ({r.n_train:,} images): "
              f"{100 * r.accuracy:.2f}% in {r.seconds:.0f} s" + (" (cached)" * r.from_cache), flush=True)

    results = run_evidence(ds, cfg, recipe, on_result=show, on_progress=progress)
    wall = time.perf_counter() - t0
    for d in differences(results):
        print(d.sentence())
    if args.write:
        command = "python -m core evidence " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        body = render(ds, results, cfg, recipe, command=command, embedding=emb.info, wall_seconds=wall)
        device = pick_device()
        write_section(Path(args.write), f"{ds.name}:{device}", f"{ds.name}: the paired sweep on {device}", body)
        print(f"wrote the {ds.name} ({device}) section of {args.write}")
    return 0


def cmd_scale(args: argparse.Namespace, progress: ProgressFn) -> int:
    from pathlib import Path

    from core.hashing import HashConfig
    from core.scale import hash_source

    if args.step in ("embed", "semantic") and args.embedding != "trained":
        raise ScaleError(f"scale {args.step} embeds with the network trained on the data (--embedding trained); "
                         f"{args.embedding} runs on one machine: python -m core embed --embedding {args.embedding}")
    out = Path(args.out)
    cfg = HashConfig(args.method, args.hash_size)
    hashed = _timed("hash on Ray", lambda: hash_source(args.source, out, cfg, address=args.address,
                                                        num_cpus=args.workers, on_progress=progress), disk_cached=False)
    n_test = int((hashed.split == 1).sum())
    print(f"source {args.source}: {len(hashed.ids):,} images, {len(hashed.classes)} classes, train "
          f"{len(hashed.ids) - n_test:,}, test {n_test:,}, skipped {len(hashed.skipped)}")
    if args.step in ("embed", "semantic"):
        return _scale_semantic(args, hashed, out, progress)
    if args.step == "duplicates":
        _scale_duplicates(args, hashed, out, cfg)
    print(f"open the results in the app: Home > Source 'scale', folder {out.resolve()} (or REDEX_DATASET=scale:{out})")
    return 0


def _scale_duplicates(args: argparse.Namespace, hashed: Any, out: Any, cfg: Any) -> None:
    """The exact search on Ray tasks, then groups, leakage and the dedup subset, as the single-machine path."""
    from core.duplicates import SCOPES, DuplicateIndex, dedup_selection, groups_at, leaked_test_images, pair_scopes
    from core.scale import search_ray, update_job, write_results

    run = _timed("search on Ray", lambda: search_ray(hashed.codes, args.threshold, address=args.address,
                                                     num_cpus=args.workers), disk_cached=False)
    pairs = run.pairs
    print(f"search workers: {len(run.worker_peak)}, peak memory per worker "
          f"{max(run.worker_peak.values(), default=0) / 2**20:,.0f} MB")
    index = DuplicateIndex(cfg, hashed.codes, pairs, pair_scopes(pairs, hashed.labels, hashed.split), args.threshold)
    for scope in SCOPES:
        groups = groups_at(index, args.threshold, scope, "first", hashed.sizes)
        print(f"{scope:>12}: {len(groups):,} groups, {groups.n_images:,} images")
    leaked = leaked_test_images(index, args.threshold, hashed.split)
    print(f"train/test leakage: {len(leaked):,} of {int((hashed.split == 1).sum()):,} test images have a "
          "near-duplicate in train")
    sel = dedup_selection(index, args.threshold, hashed.split, hashed.sizes)
    kept = sel.keep | ~sel.pool
    reasons = ["kept" if k else f"near-duplicate of {hashed.ids[r]} at {d:.0f} bits"
               for k, r, d in zip(kept, sel.representative, np.nan_to_num(sel.distance))]
    path = write_results(out, hashed, "duplicates", group=sel.group, kept=kept, reason=reasons)
    update_job(out, duplicates={"threshold": args.threshold, "pairs": len(pairs), "removed": len(sel.removed),
                                "leaked_test_images": len(leaked)})
    print(f"pairs: {len(pairs):,}; dedup removes {len(sel.removed):,}; wrote {path}")


def _scale_semantic(args: argparse.Namespace, hashed: Any, out: Any, progress: ProgressFn) -> int:
    """Embeddings on Ray actors (the network trained on the decoded train split), per-class clustering as Ray tasks."""
    from core.embedding import trained_classifier
    from core.scale import decoded_dataset, dendrograms_ray, embed_source, update_job, write_results
    from core.semantic import semantic_selection

    ds = _timed("decode for the embedding network", lambda: decoded_dataset(
        args.source, hashed, address=args.address, num_cpus=args.workers, max_images=args.train_max,
        on_progress=progress), disk_cached=False)
    model, info = _timed("embedding network", lambda: trained_classifier(ds, _embed_cfg(args), progress))
    vectors = _timed("embed on Ray", lambda: embed_source(args.source, out, (model, info), address=args.address,
                                                          num_cpus=args.workers), disk_cached=False)
    record = {k: v for k, v in info.items() if k not in ("mean", "std")}
    if args.step == "embed":
        path = write_results(out, hashed, "embeddings", embedding=vectors)
        update_job(out, embedding=record)
        print(f"embeddings {vectors.shape}; wrote {path}")
        return 0
    dendro = _timed("dendrograms on Ray", lambda: dendrograms_ray(vectors, hashed.labels, hashed.split == 0,
                                                                  address=args.address, num_cpus=args.workers),
                    disk_cached=False)
    sel = semantic_selection(dendro, vectors, keep_fraction=args.keep)
    kept = sel.keep | ~sel.pool
    reasons = ["kept" if k else f"redundant to {hashed.ids[r]} at cosine {d:.4f}"
               for k, r, d in zip(kept, sel.representative, np.nan_to_num(sel.distance))]
    path_out = write_results(out, hashed, "semantic", cluster=sel.group, kept=kept, reason=reasons, embedding=vectors)
    update_job(out, embedding=record, semantic={"keep_fraction": args.keep, "kept": len(sel.kept),
                                                "removed": len(sel.removed), "threshold": sel.params["threshold"]})
    print(f"semantic subset: keeps {len(sel.kept):,} of {int(sel.pool.sum()):,}; wrote {path_out}")
    return 0


def cmd_export(args: argparse.Namespace, progress: ProgressFn) -> int:
    from core.export import export

    ds = _load(args, progress)
    sel = _selection(args, ds, progress)
    out = export(ds, sel, args.out, images=args.images, force=args.force, on_progress=progress)
    print(json.dumps(out, indent=1))
    return 0


def _add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="digits | cifar10:ROOT | ... | imagefolder:PATH")
    p.add_argument("--download", action="store_true", help="let torchvision download a missing dataset")
    p.add_argument("--image-size", type=int, default=None, help="resize image-folder images to this square side")


def _add_hash_method(p: argparse.ArgumentParser) -> None:
    from core.hashing import HASH_SIZES, METHODS

    p.add_argument("--method", default="phash", choices=METHODS)
    p.add_argument("--hash-size", type=int, default=8, choices=HASH_SIZES)


def _add_hash(p: argparse.ArgumentParser) -> None:
    from core.duplicates import KEEP_POLICIES

    _add_hash_method(p)
    p.add_argument("--threshold", type=int, default=4, help="Hamming distance (bits) at most")
    p.add_argument("--keep", default="first", choices=KEEP_POLICIES, help="which member of a group stays")


def _add_embedding(p: argparse.ArgumentParser) -> None:
    from core.embedding import MODELS

    p.add_argument("--embedding", default="trained", choices=MODELS,
                   help="trained: the paper's own-classifier features")
    p.add_argument("--epochs", type=int, default=0, help="epochs for the trained embedding (0: the default)")
    p.add_argument("--seed", type=int, default=0)


def _add_semantic(p: argparse.ArgumentParser) -> None:
    from core.semantic import POLICIES

    _add_embedding(p)
    p.add_argument("--keep-fraction", type=float, default=None, help="keep this fraction (default 0.9)")
    p.add_argument("--distance", type=float, default=None, help="or: cosine distance threshold (cluster diameter)")
    p.add_argument("--per-class", action="store_true", help="keep the fraction within every class")
    p.add_argument("--policy", default="mean", choices=POLICIES, help="which member represents a cluster")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Redundancy Explorer from the command line")
    parser.add_argument("--cache-dir", help=f"cache folder (default ${cache.ENV_VAR} or ~/.cache/redundancy-explorer)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list the dataset sources").set_defaults(fn=cmd_datasets)
    p = sub.add_parser("hash", help="compute perceptual hashes")
    _add_dataset(p)
    _add_hash(p)
    p.set_defaults(fn=cmd_hash)
    p = sub.add_parser("duplicates", help="near-duplicate groups in three scopes, and the dedup subset")
    _add_dataset(p)
    _add_hash(p)
    p.add_argument("--show", type=int, default=5, help="how many of the largest groups to list")
    p.set_defaults(fn=cmd_duplicates)
    p = sub.add_parser("export", help="write the kept/removed manifest (and optionally the kept images)")
    _add_dataset(p)
    _add_hash(p)
    p.add_argument("--by", default="hash", choices=["hash", "semantic"], help="which method's subset")
    p.add_argument("--out", required=True, help="a new or empty folder")
    p.add_argument("--images", action="store_true", help="also copy the kept images")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    _add_semantic(p)
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("embed", help="compute (and cache) embeddings")
    _add_dataset(p)
    _add_embedding(p)
    p.set_defaults(fn=cmd_embed)
    p = sub.add_parser("semantic", help="semantic redundancy: per-class clusters, kept and removed per class")
    _add_dataset(p)
    _add_semantic(p)
    p.set_defaults(fn=cmd_semantic)
    p = sub.add_parser("experiment", help="retrain on pruned and random subsets; accuracy vs fraction kept")
    _add_dataset(p)
    p.add_argument("--methods", default="semantic,hash,random")
    p.add_argument("--keep", default="1.0,0.9,0.8,0.7", help="keep fractions, comma-separated")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train-epochs", type=int, default=0, help="override the recipe's epochs (0: the budget recipe)")
    p.add_argument("--out", help="folder for results.csv and results.json")
    p.set_defaults(fn=cmd_experiment)
    p = sub.add_parser("evidence", help="the paired many-seed sweep: semantic and hash against random, per class")
    _add_dataset(p)
    p.add_argument("--keep", default="0.9,0.7,0.5", help="keep fractions for semantic and random, comma-separated")
    p.add_argument("--hash-keep", type=float, default=0.9, help="keep fraction for the hash arm")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--write", help="a markdown file whose section for this dataset and device is rewritten")
    p.set_defaults(fn=cmd_evidence)
    p = sub.add_parser("scale", help="run on Ray: a local one, or a cluster with --address")
    p.add_argument("step", choices=["hash", "duplicates", "embed", "semantic"])
    p.add_argument("--source", required=True, help="imagefolder:PATH | parquet:PATH | webdataset:PATH")
    p.add_argument("--out", required=True, help="result folder (resumable: finished shards are kept)")
    p.add_argument("--address", default=None, help="auto or ray://HOST:PORT; default: start a local Ray")
    p.add_argument("--workers", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.add_argument("--threshold", type=int, default=4)
    p.add_argument("--keep", type=float, default=0.9)
    p.add_argument("--train-max", type=int, default=200_000,
                   help="most images decoded on the driver to train the embedding network (a spread of shards)")
    _add_hash_method(p)
    _add_embedding(p)
    p.set_defaults(fn=cmd_scale)
    p = sub.add_parser("umap", help="2-D UMAP map of the embeddings")
    _add_dataset(p)
    _add_embedding(p)
    p.add_argument("--neighbors", type=int, default=15)
    p.add_argument("--min-dist", type=float, default=0.1)
    p.set_defaults(fn=cmd_umap)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cache_dir:
        os.environ[cache.ENV_VAR] = args.cache_dir
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    np.set_printoptions(suppress=True)
    try:
        return int(args.fn(args, TqdmProgress()))
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError, PermissionError, ScaleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written is kept", file=sys.stderr)
        return 130


__all__ = ["main", "SOURCES", "SPLIT_NAMES"]
