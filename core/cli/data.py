"""Commands over the data and its near-duplicates: datasets, hash, duplicates, candidates, export."""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from typing import Any

from core.cli.common import add_dataset, add_hash_method, add_near_dup, add_semantic, load, settings, timed
from core.data.datasets import SPLIT_NAMES, TEST, TORCHVISION_SOURCES, TRAIN, Dataset
from core.data.scope import SCOPES, parse
from core.data.types import ProgressFn
from core.features.hashing import HashConfig, dataset_hashes, to_hex
from core.pipelines.check import check_images, folder_files, read_images
from core.pipelines.check import rows as check_rows
from core.pipelines.export import export
from core.pipelines.near_duplicates import near_duplicates
from core.pipelines.settings import HASH
from core.selections.candidates import APPROXIMATE_FROM, SEARCHES, CandidateConfig, cached_candidates
from core.selections.duplicates import exact_groups
from core.selections.review import precision, read_judgments
from core.selections.selection import Selection


def cmd_datasets(args: argparse.Namespace, progress: ProgressFn) -> int:
    print("digits            scikit-learn's 8x8 digits (embedded default, no files needed)")
    for name, (_, files) in TORCHVISION_SOURCES.items():
        print(f"{name + ':ROOT':<17} torchvision; expects ROOT/{files} (--download fetches them when online)")
    print("imagefolder:PATH  PATH/<class>/<image> or PATH/{train,test}/<class>/<image>, any Pillow format")
    print("scale:FOLDER      the --out folder of `python -m core scale` (a Ray job's results)")
    return 0


def cmd_hash(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = load(args, progress)
    cfg = HashConfig(args.method, args.hash_size)
    codes = timed(f"hash {cfg.label}", lambda: dataset_hashes(ds, cfg, progress))
    for i in range(min(5, len(ds))):
        print(f"  {ds.ids[i]}  {to_hex(codes[i : i + 1])[0]}")
    return 0


def cmd_duplicates(args: argparse.Namespace, progress: ProgressFn) -> int:
    """Near-duplicates at the settings: each scope's groups, the leakage, and the dedup subset per class."""
    ds = load(args, progress)
    s = settings(args).resolved(ds)
    print(f"method: {s.near_dup.describe()}")
    result = timed("near-duplicates", lambda: near_duplicates(ds, s.near_dup, on_progress=progress))
    for scope, fig in result.scopes.items():
        print(f"{scope.label:>34}: {fig.pairs:,} pairs, {fig.groups:,} groups, {fig.images:,} images")
    assert result.leaked is not None and result.selection is not None
    judged = f" ({result.judged:,} judgments took part)" if result.judged else ""
    print(f"train/test leakage: {len(result.leaked):,} of {int((ds.split == TEST).sum()):,} test images have a "
          f"near-duplicate in train{judged}")
    print(f"exact pixel duplicates: {len(exact_groups(ds)):,} groups")
    sel = result.selection
    per = sel.per_class(ds.labels, len(ds.classes))
    print(f"dedup (within class, train): removes {len(sel.removed):,} of {int(sel.pool.sum()):,} "
          f"({100 * (1 - sel.kept_fraction):.2f}%)")
    for k, c in enumerate(ds.classes):
        print(f"  {c:>12}: removes {per['removed'][k]:>6,} of {per['kept'][k] + per['removed'][k]:,}")
    shown = sel.removed[: args.show]
    for i in shown:
        print(f"  {ds.ids[i]}: {sel.reason(int(i), ds)}")
    return 0


def _selection(args: argparse.Namespace, ds: Dataset, progress: ProgressFn) -> Selection:
    s = settings(args).resolved(ds)
    if args.by == "semantic":
        from core.cli.semantic import semantic_selection_at

        return semantic_selection_at(ds, s.semantic, progress)[2]
    near = replace(s.near_dup, method=HASH) if args.by == "hash" else s.near_dup
    sel = timed("near-duplicates", lambda: near_duplicates(ds, near, on_progress=progress)).selection
    assert sel is not None
    return sel


def cmd_export(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = load(args, progress)
    sel = _selection(args, ds, progress)
    out = export(ds, sel, args.out, images=args.images, force=args.force, on_progress=progress)
    print(json.dumps(out, indent=1))
    return 0


def cmd_candidates(args: argparse.Namespace, progress: ProgressFn) -> int:
    """The ranked near-duplicate candidates of one scope, best first; --csv writes them all."""
    ds = load(args, progress)
    t0 = time.perf_counter()
    scope = parse(args.scope)
    cfg = CandidateConfig(top_k=args.neighbours, network=not args.no_network_cue, search=args.search)
    cands = cached_candidates(ds, scope, cfg, on_progress=progress, every_match=args.every_match)
    print(f"{len(cands):,} candidate pairs ({scope.label}) in {time.perf_counter() - t0:.1f} s; best first:")
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


def cmd_check(args: argparse.Namespace, progress: ProgressFn) -> int:
    """Which images of a folder are already in the dataset: each one's best training and test match."""
    ds = load(args, progress)
    s = settings(args).resolved(ds)
    t0 = time.perf_counter()
    images, names, skipped = read_images(folder_files(args.images), ds.image_shape[:2])
    for sk in skipped:
        print(f"  skipped {sk.path}: {sk.reason}")
    result = check_images(ds, images, names, s.near_dup, skipped=skipped, top=args.top, on_progress=progress)
    print(f"{len(names):,} images checked in {time.perf_counter() - t0:.1f} s ({len(skipped):,} skipped); "
          f"duplicate at pair score >= {s.near_dup.min_score:.2f} (a judgment wins):")
    for split in (TRAIN, TEST):
        print(f"  already in {SPLIT_NAMES[split]}: {len(result.in_dataset(split)):,}")
    print(f"{'image':<36} {'best train match':<36} {'score':>6}  {'best test match':<36} {'score':>6}")
    for i, name in enumerate(names[: args.show]):
        cells = []
        for split in (TRAIN, TEST):
            r = result.best(i, split)
            cells.append(("-", "") if r is None else (
                str(ds.ids[int(result.match[r])]), f"{result.score[r]:.3f}" + ("*" if result.duplicate[r] else " ")))
        print(f"{name[:36]:<36} {cells[0][0][:36]:<36} {cells[0][1]:>6}  {cells[1][0][:36]:<36} {cells[1][1]:>6}")
    if len(names) > args.show:
        print(f"... and {len(names) - args.show:,} more (--csv writes them all); * marks a duplicate")
    if args.csv:
        table = check_rows(ds, result)
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]) if table else ["image"])
            writer.writeheader()
            writer.writerows(table)
        print(f"wrote {args.csv}")
    return 0


def register(sub: Any) -> None:
    sub.add_parser("datasets", help="list the dataset sources").set_defaults(fn=cmd_datasets)
    p = sub.add_parser("hash", help="compute perceptual hashes")
    add_dataset(p)
    add_hash_method(p)
    p.set_defaults(fn=cmd_hash)
    p = sub.add_parser("duplicates", help="near-duplicates in the three scopes, the leakage and the dedup subset")
    add_dataset(p)
    add_near_dup(p)
    p.add_argument("--show", type=int, default=5, help="how many removed images to list with their reason")
    p.set_defaults(fn=cmd_duplicates)
    p = sub.add_parser("export", help="write the kept/removed manifest (and optionally the kept images)")
    add_dataset(p)
    add_near_dup(p)
    p.add_argument("--by", default="near-duplicates", choices=["near-duplicates", "hash", "semantic"],
                   help="which subset: without the near-duplicates (hash: the same, by --dup-method), or semantic")
    p.add_argument("--out", required=True, help="a new or empty folder")
    p.add_argument("--images", action="store_true", help="also copy the kept images")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    add_semantic(p)
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("candidates", help="near-duplicate candidates by pixel neighbours and a pair score, best first")
    add_dataset(p)
    p.add_argument("--scope", default="leakage", choices=[s.value for s in SCOPES],
                   help="leakage: test images and their training matches; within / cross: training pairs of one / two "
                        "classes")
    p.add_argument("--top", type=int, default=50, help="how many pairs to print")
    p.add_argument("--neighbours", type=int, default=CandidateConfig().top_k, help="neighbours kept per image and cue")
    p.add_argument("--no-network-cue", action="store_true",
                   help="leave out the pairs the trained network's embedding adds")
    p.add_argument("--search", default=CandidateConfig().search, choices=SEARCHES,
                   help="exact: every vector; ivf: an inverted-file index; auto: ivf from "
                        f"{APPROXIMATE_FROM:,} images")
    p.add_argument("--csv", help="write every pair, ranked, to this CSV file")
    p.add_argument("--every-match", action="store_true",
                   help="leakage: list every training match of a test image, not only its best one")
    p.add_argument("--judgments", help="a judgments file (the review page's .json, or its judged-pairs CSV): "
                                       "print the precision of the list so far")
    p.set_defaults(fn=cmd_candidates)
    p = sub.add_parser("check", help="which images of a folder are already in the dataset (train or test)")
    add_dataset(p)
    p.add_argument("--images", required=True, help="a folder of images to check (read only, recursively)")
    p.add_argument("--min-score", type=float, default=None,
                   help="pair score at or above which a match is a duplicate (default: the settings')")
    p.add_argument("--top", type=int, default=3, help="matches kept per image and split")
    p.add_argument("--show", type=int, default=20, help="how many images to print")
    p.add_argument("--csv", help="write every match to this CSV file")
    p.set_defaults(fn=cmd_check)
