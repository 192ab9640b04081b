"""`python -m core ...`: the same computations as the app, from a terminal.

Long steps show tqdm bars fed by the one progress protocol; every error is one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

import core.results  # noqa: F401  (registers the 'scale:' source: a Ray result folder opens as a dataset)
from core import cache, recipes
from core.candidates import SCOPES as CANDIDATE_SCOPES
from core.candidates import CandidateConfig, cached_candidates
from core.datasets import SOURCES, SPLIT_NAMES, TEST, TORCHVISION_SOURCES, TRAIN, Dataset, DatasetError, load_dataset
from core.device import pick_device
from core.duplicates import (
    DEFAULT_KEEP_RULE,
    DEFAULT_RADIUS,
    KEEP_RULES,
    SCOPES,
    DuplicateIndex,
    build_index,
    exact_groups,
    groups_at,
    hash_selection,
    leaked_test_images,
    max_radius,
)
from core.embedding import MODELS, EmbedConfig, Embeddings, embed
from core.evidence import ARMS as EVIDENCE_ARMS
from core.evidence import EvidenceConfig, against_default_embedding, differences, render, run_evidence, write_section
from core.experiments import (
    DEFAULT_BUDGET,
    DEFAULT_FRACTIONS,
    ArmResult,
    ExperimentConfig,
    arm_budget,
    default_recipe,
    plan,
    run_sweep,
    seconds_per_step,
    summarize,
    sweep_steps,
)
from core.experiments import write_results as write_experiment_results
from core.export import export
from core.hashing import HASH_SIZES, METHODS, HashConfig, dataset_hashes, to_hex
from core.projection import UmapConfig, cached_projection
from core.recipes import AnyRecipe
from core.report import ReportConfig, ReportError, build_report, to_pdf, write_report
from core.review import precision, read_judgments
from core.scale import hash_source, scale_duplicates, scale_semantic
from core.selection import Selection
from core.semantic import DEFAULT_KEEP_FRACTION, POLICIES, Dendrograms, semantic_index, semantic_selection
from core.shards import ScaleError
from core.training import BUDGETS, PRECISIONS
from core.types import Progress, ProgressFn

T = TypeVar("T")


class TqdmProgress:
    """Renders Progress reports as one tqdm bar per phase, on stderr."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm[Any]] = {}

    def __call__(self, p: Progress) -> None:
        bar = self._bars.get(p.phase)
        if bar is None:
            bar = self._bars[p.phase] = tqdm(total=p.total or None, desc=p.phase, file=sys.stderr, leave=False)
        if p.message:
            bar.set_postfix_str(p.message[:40], refresh=False)
        bar.update(p.done - bar.n)  # tqdm throttles the redraws itself
        if p.total and p.done >= p.total:
            bar.close()
            del self._bars[p.phase]


def _timed(label: str, fn: Callable[[], T], disk_cached: bool = True) -> T:
    """Run one step, printing its time and (for disk-cached steps) whether it came from the cache."""
    t0, misses = time.perf_counter(), cache.stats.misses
    out = fn()
    status = (" (computed)" if cache.stats.misses > misses else " (from cache)") if disk_cached else ""
    print(f"{label}: {time.perf_counter() - t0:.2f} s{status}")
    return out


def _load(args: argparse.Namespace, progress: ProgressFn) -> Dataset:
    ds = _timed("load", lambda: load_dataset(args.dataset, download=args.download,
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
    print("scale:FOLDER      the --out folder of `python -m core scale` (a Ray job's results)")
    return 0


def _hash_cfg(args: argparse.Namespace) -> HashConfig:
    return HashConfig(args.method, args.hash_size)


def cmd_hash(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = _load(args, progress)
    cfg = _hash_cfg(args)
    codes = _timed(f"hash {cfg.label}", lambda: dataset_hashes(ds, cfg, progress))
    for i in range(min(5, len(ds))):
        print(f"  {ds.ids[i]}  {to_hex(codes[i : i + 1])[0]}")
    return 0


def _hash_selection(args: argparse.Namespace, ds: Dataset, progress: ProgressFn) -> tuple[DuplicateIndex, Selection]:
    cfg = _hash_cfg(args)
    if not 0 <= args.radius <= max_radius(cfg.bits):
        raise ValueError(f"--radius must be between 0 and {max_radius(cfg.bits)} for {cfg.label}")
    index = _timed("index (hashes + pairs)", lambda: build_index(ds, cfg, progress))
    return index, hash_selection(ds, index, args.radius, args.keep_rule)


def cmd_duplicates(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = _load(args, progress)
    index, sel = _hash_selection(args, ds, progress)
    t0 = time.perf_counter()
    for scope in SCOPES:
        groups = groups_at(index, args.radius, scope, args.keep_rule, ds.sizes)
        big = int(groups.sizes.max()) if len(groups) else 0
        diam = int(groups.diameter.max()) if len(groups) else 0
        print(f"{scope:>12}: {len(groups):,} groups, {groups.n_images:,} images, largest {big}, "
              f"largest diameter {diam} bits")
    leaked = leaked_test_images(index, args.radius, ds.split)
    print(f"train/test leakage: {len(leaked):,} of {int((ds.split == TEST).sum()):,} test images have a near-duplicate "
          "in train")
    print(f"exact pixel duplicates: {len(exact_groups(ds)):,} groups")
    per = sel.per_class(ds.labels, len(ds.classes))
    print(f"dedup (within class, train): removes {len(sel.removed):,} of {int(sel.pool.sum()):,} "
          f"({100 * (1 - sel.kept_fraction):.2f}%), cut in {1000 * (time.perf_counter() - t0):.0f} ms")
    for k, c in enumerate(ds.classes):
        print(f"  {c:>12}: removes {per['removed'][k]:>6,} of {per['kept'][k] + per['removed'][k]:,}")
    within = groups_at(index, args.radius, "within-class", args.keep_rule, ds.sizes)
    for g in range(min(args.show, len(within))):
        mem = within.group(g)
        names = ", ".join(f"{ds.ids[m]}{'*' if m == within.keep[g] else ''}" for m in mem[:6])
        print(f"  group {g}: {len(mem)} images, diameter {within.diameter[g]}: {names}{' ...' if len(mem) > 6 else ''}")
    return 0


def _embed_cfg(args: argparse.Namespace) -> EmbedConfig:
    return EmbedConfig(model=args.embedding, epochs=args.epochs, seed=args.seed)


def _semantic_selection(args: argparse.Namespace, ds: Dataset,
                        progress: ProgressFn) -> tuple[Embeddings, Dendrograms, Selection]:
    """(embeddings, dendrograms, selection) at --keep-fraction (its default) or --distance."""
    keep = DEFAULT_KEEP_FRACTION if args.keep_fraction is None and args.distance is None else args.keep_fraction
    emb, dendro = _timed("embeddings + dendrograms", lambda: semantic_index(ds, _embed_cfg(args), on_progress=progress))
    sel = semantic_selection(dendro, emb.vectors, threshold=args.distance, keep_fraction=keep,
                             per_class=args.per_class, policy=args.policy, seed=args.seed)
    return emb, dendro, sel


def cmd_embed(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = _load(args, progress)
    emb = _timed("embed", lambda: embed(ds, _embed_cfg(args), download=args.download, on_progress=progress))
    print(f"embeddings: {emb.vectors.shape[0]:,} x {emb.vectors.shape[1]}; " + json.dumps(emb.info, sort_keys=True))
    return 0


def cmd_semantic(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = _load(args, progress)
    emb, dendro, sel = _semantic_selection(args, ds, progress)
    print(f"embedding: {emb.info.get('model')} ({json.dumps(emb.info, sort_keys=True)})")
    for c, route in sorted(dendro.routes.items()):
        if not route.startswith("exact"):
            print(f"  class {ds.classes[c]}: {route}")
    print(f"semantic subset: keeps {len(sel.kept):,} of {int(sel.pool.sum()):,} ({100 * sel.kept_fraction:.2f}%), "
          f"removes {len(sel.removed):,}; cosine threshold {sel.params['threshold']}")
    per = sel.per_class(ds.labels, len(ds.classes))
    for k, name in enumerate(ds.classes):
        print(f"  {name:>12}: kept {per['kept'][k]:>6,}  removed {per['removed'][k]:>6,}")
    for other in (0.05, 0.1, 0.2):
        t0 = time.perf_counter()
        again = semantic_selection(dendro, emb.vectors, threshold=other, policy=args.policy)
        print(f"re-cut at cosine distance {other}: keeps {len(again.kept):,} ({100 * again.kept_fraction:.2f}%) "
              f"in {1000 * (time.perf_counter() - t0):.1f} ms")
    return 0


def cmd_umap(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = _load(args, progress)
    emb = _timed("embed", lambda: embed(ds, _embed_cfg(args), on_progress=progress))
    cfg = UmapConfig(n_neighbors=args.neighbors, min_dist=args.min_dist)
    proj = _timed("umap", lambda: cached_projection(emb.vectors, emb.key, cfg, progress))
    print(f"map: {len(proj.xy):,} points, fitted on {proj.fitted_on:,}; x in [{proj.xy[:, 0].min():.2f}, "
          f"{proj.xy[:, 0].max():.2f}], y in [{proj.xy[:, 1].min():.2f}, {proj.xy[:, 1].max():.2f}]")
    return 0


def _fractions(text: str) -> tuple[float, ...]:
    return tuple(float(f) for f in text.split(",") if f.strip())


def _show_run(r: ArmResult) -> None:
    print(f"  seed {r.seed} {r.method:>11} keep {r.fraction:.2f} (real {r.kept_fraction:.4f}, {r.n_train:,} images): "
          f"{100 * r.accuracy:.2f}% in {r.seconds:.1f} s" + (" (cached)" * r.from_cache), flush=True)


def _recipe(args: argparse.Namespace, ds: Dataset) -> AnyRecipe:
    """--recipe (a preset name; default: the dataset's) at --train-epochs (0: the preset's) in --precision."""
    base = recipes.with_epochs(recipes.get(args.recipe) if args.recipe else default_recipe(ds), args.train_epochs)
    return recipes.with_precision(base, args.precision)


def cmd_experiment(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = _load(args, progress)
    recipe = _recipe(args, ds)
    cfg = ExperimentConfig(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                           fractions=_fractions(args.keep_fractions), seeds=args.seeds, recipe=recipe,
                           budget=args.budget)
    arms = plan(cfg)
    estimate = seconds_per_step(ds, recipe) * sweep_steps(ds, cfg, arms)
    print(f"recipe: {recipes.describe(recipe, arm_budget(recipe, cfg.budget))}")
    print(f"{len(arms)} arms; estimated {estimate / 60:.1f} min if none is cached")
    results = run_sweep(ds, cfg, arms=arms, on_progress=progress, on_result=_show_run)
    rows = summarize(results)
    print(f"{'method':>8} {'keep':>5} {'real':>7} {'n':>7} {'seeds':>5} {'accuracy':>16} {'s/run':>7}")
    for r in rows:
        print(f"{r['method']:>8} {r['fraction']:>5.2f} {r['kept_fraction']:>7.4f} {r['n_train']:>7,} {r['seeds']:>5} "
              f"{100 * r['accuracy_mean']:>8.2f} ± {100 * r['accuracy_std']:>5.2f} {r['seconds_mean']:>7.1f}")
    for d in differences(results):
        print(d.sentence())
    if args.out:
        js, table = write_experiment_results(args.out, ds, recipe, results, cfg.budget)
        print(f"wrote {table} and {js}")
    return 0


def cmd_evidence(args: argparse.Namespace, progress: ProgressFn) -> int:
    """The paired many-seed sweep; prints each run and the paired verdicts, and rewrites a RESULTS.md section."""
    ds = _load(args, progress)
    embed_cfg = EmbedConfig(arch=args.embedding_arch, epochs=args.embedding_epochs)
    cfg = EvidenceConfig(fractions=_fractions(args.keep_fractions), hash_fraction=args.hash_keep_fraction,
                         seeds=args.seeds, arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
                         embed=embed_cfg, recipe=args.recipe, epochs=args.train_epochs, budget=args.budget,
                         precision=args.precision)
    emb = _timed("embedding network + embeddings", lambda: embed(ds, embed_cfg, on_progress=progress))
    print(f"embedding: {emb.info.get('recipe', emb.info.get('arch'))}, "
          f"test accuracy {100 * emb.info.get('test_accuracy', float('nan')):.2f}%")
    print(f"recipe: {recipes.describe(cfg.training_recipe(ds), cfg.budget)}")
    t0 = time.perf_counter()
    results = run_evidence(ds, cfg, on_result=_show_run, on_progress=progress)
    wall = time.perf_counter() - t0
    for d in differences(results):
        print(d.sentence())
    other = embed_cfg != EmbedConfig()
    against = against_default_embedding(ds, results, cfg) if other else []
    for d in against:
        print(d.sentence())
    if args.write:
        command = "python -m core evidence " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        body = render(ds, results, cfg, command=command, embedding=emb.info, wall_seconds=wall)
        if against:
            body += ("\nAgainst the default embedding (semantic with this network minus semantic with the default "
                     "one, seed by seed, same recipe):\n\n" + "\n".join(f"- {d.sentence()}" for d in against) + "\n")
        device, label = pick_device(), Path(ds.name.partition(":")[2] or ds.name).name  # not the machine's path
        name, title = f"{label}:{device}", f"{label}: the paired sweep on {device}"
        if other:
            arch = emb.info.get("arch")
            name, title = f"{name}:{arch}-{emb.info.get('epochs')}", f"{title}, semantic subset from {arch}"
        write_section(Path(args.write), name, title, body)
        print(f"wrote the {label} ({device}) section of {args.write}")
    return 0


def cmd_scale(args: argparse.Namespace, progress: ProgressFn) -> int:
    if args.step in ("embed", "semantic") and args.embedding != "trained":
        raise ScaleError(f"scale {args.step} embeds with the network trained on the data (--embedding trained); "
                         f"{args.embedding} runs on one machine: python -m core embed --embedding {args.embedding}")
    out = Path(args.out)
    cfg = HashConfig(args.method, args.hash_size)
    hashed = _timed("hash on Ray", lambda: hash_source(args.source, out, cfg, address=args.address,
                                                        num_cpus=args.workers, on_progress=progress), disk_cached=False)
    n_test = int((hashed.split == TEST).sum())
    print(f"source {args.source}: {len(hashed.ids):,} images, {len(hashed.classes)} classes, train "
          f"{int((hashed.split == TRAIN).sum()):,}, test {n_test:,}, skipped {len(hashed.skipped)}")
    if args.step == "duplicates":
        dup = scale_duplicates(out, hashed, cfg, args.radius, address=args.address, num_cpus=args.workers)
        _print_seconds(dup.seconds)
        print(f"search workers: {len(dup.worker_peak)}, peak memory per worker "
              f"{max(dup.worker_peak.values(), default=0) / 2**20:,.0f} MB")
        for scope, (n_groups, n_images) in dup.groups.items():
            print(f"{scope:>12}: {n_groups:,} groups, {n_images:,} images")
        print(f"train/test leakage: {dup.leaked:,} of {dup.n_test:,} test images have a near-duplicate in train")
        print(f"pairs: {dup.pairs:,}; dedup removes {dup.removed:,}; wrote {dup.path}")
    elif args.step in ("embed", "semantic"):
        keep = args.keep_fraction if args.step == "semantic" else None
        sem = scale_semantic(args.source, out, hashed, _embed_cfg(args), keep, address=args.address,
                             num_cpus=args.workers, train_max=args.train_max, on_progress=progress)
        _print_seconds(sem.seconds)
        if sem.kept is None:
            print(f"embeddings {sem.vectors}; wrote {sem.path}")
        else:
            print(f"semantic subset: keeps {sem.kept:,} of {sem.pool:,}; wrote {sem.path}")
    print(f"open the results in the app: Home > Source 'scale', folder {out.resolve()} (or REDEX_DATASET=scale:{out})")
    return 0


def _print_seconds(seconds: dict[str, float]) -> None:
    for label, s in seconds.items():
        print(f"{label}: {s:.2f} s")


def _selection(args: argparse.Namespace, ds: Dataset, progress: ProgressFn) -> Selection:
    if args.by == "hash":
        return _hash_selection(args, ds, progress)[1]
    return _semantic_selection(args, ds, progress)[2]


def cmd_export(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = _load(args, progress)
    sel = _selection(args, ds, progress)
    out = export(ds, sel, args.out, images=args.images, force=args.force, on_progress=progress)
    print(json.dumps(out, indent=1))
    return 0


def cmd_candidates(args: argparse.Namespace, progress: ProgressFn) -> int:
    """The ranked near-duplicate candidates of one scope, best first; --csv writes them all."""
    ds = _load(args, progress)
    t0 = time.perf_counter()
    cands = cached_candidates(ds, args.scope, CandidateConfig(top_k=args.neighbours), on_progress=progress,
                              every_match=args.every_match)
    print(f"{len(cands):,} candidate pairs ({args.scope}) in {time.perf_counter() - t0:.1f} s; best first:")
    print(f"{'rank':>5} {'score':>6} {'cue':>17}  {'image':<32} {'its match':<32}")
    for r in range(min(args.top, len(cands))):
        a, b = int(cands.a[r]), int(cands.b[r])
        print(f"{r + 1:>5} {cands.score[r]:>6.3f} {cands.cue[r]:>17}  {str(ds.ids[a]):<32} {str(ds.ids[b]):<32}")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["rank", "score", "cue", "cue_similarity", "image", "image_class", "match", "match_class"])
            for r in range(len(cands)):
                a, b = int(cands.a[r]), int(cands.b[r])
                writer.writerow([r + 1, f"{cands.score[r]:.4f}", cands.cue[r], f"{cands.cue_similarity[r]:.4f}",
                                 ds.ids[a], ds.classes[ds.labels[a]], ds.ids[b], ds.classes[ds.labels[b]]])
        print(f"wrote {args.csv}")
    if args.judgments:
        judged = read_judgments(args.judgments, ds)
        print(f"precision of this list from {len(judged):,} judgments in {args.judgments}:")
        for p in precision(cands, judged, tuple(sorted({args.top, 100, 300, 600} - {0}))):
            print(f"  {p}")
    return 0


def cmd_report(args: argparse.Namespace, progress: ProgressFn) -> int:
    """One self-contained HTML report (and with --pdf its PDF through Chromium)."""
    ds = _load(args, progress)
    cfg = ReportConfig(hash=_hash_cfg(args), radius=args.radius, keep_fraction=args.keep_fraction)
    t0 = time.perf_counter()
    page = build_report(ds, cfg, dataset_spec=args.dataset, on_progress=progress)
    out = write_report(page, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")
    if args.pdf:
        t1 = time.perf_counter()
        pdf = to_pdf(out, out.with_suffix(".pdf"))
        print(f"wrote {pdf} ({pdf.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t1:.1f} s")
    return 0


class _Renamed(argparse.Action):
    """An old spelling of an option: still accepted, with a note naming the one that replaces it."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"note: {option_string} is now {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _renamed(p: argparse.ArgumentParser, old: str, new: str, dest: str, type: Callable[[str], Any] = str) -> None:
    p.add_argument(old, dest=dest, action=_Renamed, new=new, type=type, help=argparse.SUPPRESS)


def _add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="digits | cifar10:ROOT | ... | imagefolder:PATH | scale:FOLDER")
    p.add_argument("--download", action="store_true", help="let torchvision download a missing dataset")
    p.add_argument("--image-size", type=int, default=None, help="resize image-folder images to this square side")


def _add_hash_method(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=HashConfig().method, choices=METHODS)
    p.add_argument("--hash-size", type=int, default=HashConfig().hash_size, choices=HASH_SIZES)


def _add_radius(p: argparse.ArgumentParser) -> None:
    p.add_argument("--radius", type=int, default=DEFAULT_RADIUS, help="Hamming radius: pairs at most this many bits "
                   "apart are near-duplicates")
    _renamed(p, "--threshold", "--radius", "radius", int)


def _add_hash(p: argparse.ArgumentParser) -> None:
    _add_hash_method(p)
    _add_radius(p)
    p.add_argument("--keep-rule", default=DEFAULT_KEEP_RULE, choices=KEEP_RULES, help="which image of a group stays")
    _renamed(p, "--keep", "--keep-rule", "keep_rule")


def _add_embedding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedding", default=EmbedConfig().model, choices=MODELS,
                   help="trained: the paper's own-classifier features")
    p.add_argument("--epochs", type=int, default=0, help="epochs for the trained embedding (0: the default)")
    p.add_argument("--seed", type=int, default=0)


def _add_semantic(p: argparse.ArgumentParser) -> None:
    _add_embedding(p)
    p.add_argument("--keep-fraction", type=float, default=None,
                   help=f"keep this fraction of the training set (default {DEFAULT_KEEP_FRACTION})")
    p.add_argument("--distance", type=float, default=None, help="or: cosine distance threshold (cluster diameter)")
    p.add_argument("--per-class", action="store_true", help="keep the fraction within every class")
    p.add_argument("--policy", default="mean", choices=POLICIES, help="which member represents a cluster")


def _add_recipe(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="", choices=["", *recipes.PRESETS],
                   help="the training recipe by name (default: the converged one for the dataset and device)")
    p.add_argument("--train-epochs", type=float, default=0, help="run the recipe this many epochs (0: its own)")
    p.add_argument("--precision", default="", choices=["", *PRECISIONS],
                   help="airbench recipes: bf16 or float32 (default: the recipe's, auto: bf16 where native)")
    p.add_argument("--budget", default=DEFAULT_BUDGET, choices=BUDGETS,
                   help="steps: every subset trains the full set's optimizer steps (default); epochs: the recipe's "
                        "epochs over the subset (the compute pruning saves)")


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
    p.add_argument("--keep-fractions", default=",".join(map(str, DEFAULT_FRACTIONS)),
                   help="keep fractions, comma-separated")
    _renamed(p, "--keep", "--keep-fractions", "keep_fractions")
    p.add_argument("--seeds", type=int, default=ExperimentConfig().seeds)
    _add_recipe(p)
    p.add_argument("--out", help="folder for results.csv and results.json")
    p.set_defaults(fn=cmd_experiment)
    p = sub.add_parser("evidence", help="the paired many-seed sweep: semantic and hash against random, per class")
    _add_dataset(p)
    p.add_argument("--keep-fractions", default=",".join(map(str, EvidenceConfig().fractions)),
                   help="keep fractions for semantic and random, comma-separated")
    _renamed(p, "--keep", "--keep-fractions", "keep_fractions")
    p.add_argument("--hash-keep-fraction", type=float, default=EvidenceConfig().hash_fraction,
                   help="keep fraction for the hash arm")
    _renamed(p, "--hash-keep", "--hash-keep-fraction", "hash_keep_fraction", float)
    p.add_argument("--seeds", type=int, default=EvidenceConfig().seeds)
    p.add_argument("--arms", default=",".join(EvidenceConfig().arms), help="which arms to run, comma-separated: "
                   f"{', '.join(EVIDENCE_ARMS)}")
    _add_recipe(p)
    p.add_argument("--embedding-arch", default=EmbedConfig().arch,
                   help="the network behind the semantic subset (auto: the default for the dataset)")
    p.add_argument("--embedding-epochs", type=int, default=EmbedConfig().epochs, help="its epochs (0: the default)")
    p.add_argument("--write", help="a markdown file whose section for this dataset and device is rewritten")
    p.set_defaults(fn=cmd_evidence)
    p = sub.add_parser("candidates", help="near-duplicate candidates by pixel neighbours and a pair score, best first")
    _add_dataset(p)
    p.add_argument("--scope", default="leakage", choices=CANDIDATE_SCOPES,
                   help="leakage: test images and their training matches; within / cross: training pairs of one / two "
                        "classes")
    p.add_argument("--top", type=int, default=50, help="how many pairs to print")
    p.add_argument("--neighbours", type=int, default=CandidateConfig().top_k, help="neighbours kept per image and cue")
    p.add_argument("--csv", help="write every pair, ranked, to this CSV file")
    p.add_argument("--every-match", action="store_true",
                   help="leakage: list every training match of a test image, not only its best one")
    p.add_argument("--judgments", help="a judgments file (the review page's .json, or its judged-pairs CSV): "
                                       "print the precision of the list so far")
    p.set_defaults(fn=cmd_candidates)
    p = sub.add_parser("report", help="one self-contained HTML report of the redundancy and the proof")
    _add_dataset(p)
    _add_hash_method(p)
    _add_radius(p)
    p.add_argument("--keep-fraction", type=float, default=DEFAULT_KEEP_FRACTION,
                   help="semantic: keep this fraction of the training set")
    p.add_argument("--out", default="report.html", help="the HTML file to write")
    p.add_argument("--pdf", action="store_true", help="also print it to PDF with Chromium (beside the HTML)")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("scale", help="run on Ray: a local one, or a cluster with --address")
    p.add_argument("step", choices=["hash", "duplicates", "embed", "semantic"])
    p.add_argument("--source", required=True, help="imagefolder:PATH | parquet:PATH | webdataset:PATH")
    p.add_argument("--out", required=True, help="result folder (resumable: finished shards are kept)")
    p.add_argument("--address", default=None, help="auto or ray://HOST:PORT; default: start a local Ray")
    p.add_argument("--workers", type=int, default=None, help="CPUs for a local Ray (default: all)")
    _add_radius(p)
    p.add_argument("--keep-fraction", type=float, default=DEFAULT_KEEP_FRACTION,
                   help="semantic: keep this fraction of the training set")
    _renamed(p, "--keep", "--keep-fraction", "keep_fraction", float)
    p.add_argument("--train-max", type=int, default=200_000,
                   help="most images decoded on the driver to train the embedding network (a spread of shards)")
    _add_hash_method(p)
    _add_embedding(p)
    p.set_defaults(fn=cmd_scale)
    p = sub.add_parser("umap", help="2-D UMAP map of the embeddings")
    _add_dataset(p)
    _add_embedding(p)
    p.add_argument("--neighbors", type=int, default=UmapConfig().n_neighbors)
    p.add_argument("--min-dist", type=float, default=UmapConfig().min_dist)
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
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError, PermissionError, ScaleError,
            ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written is kept", file=sys.stderr)
        return 130


__all__ = ["main", "SOURCES", "SPLIT_NAMES"]
