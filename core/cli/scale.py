"""The scale command: the same steps on Ray, a local one or a cluster with --address."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli.common import add_embedding, add_hash_method, add_radius, renamed, settings, timed
from core.data.datasets import TEST, TRAIN
from core.data.scope import SCOPES, Scope, parse
from core.data.shards import ScaleError
from core.data.types import ProgressFn
from core.features.hashing import HashConfig
from core.pipelines.scale import hash_source, scale_duplicates, scale_semantic
from core.selections.candidates import CandidateConfig
from core.selections.semantic import DEFAULT_KEEP_FRACTION


def scopes(text: str) -> tuple[Scope, ...]:
    """--scope: 'all' or a comma list of scopes."""
    return SCOPES if text == "all" else tuple(parse(s.strip()) for s in text.split(",") if s.strip())


def _print_seconds(seconds: dict[str, float]) -> None:
    for label, s in seconds.items():
        print(f"{label}: {s:.2f} s")


def cmd_scale(args: argparse.Namespace, progress: ProgressFn) -> int:
    if args.step in ("embed", "semantic") and args.embedding != "trained":
        raise ScaleError(f"scale {args.step} embeds with the network trained on the data (--embedding trained); "
                         f"{args.embedding} runs on one machine: python -m core embed --embedding {args.embedding}")
    out = Path(args.out)
    cfg = HashConfig(args.method, args.hash_size)
    hashed = timed("hash on Ray", lambda: hash_source(args.source, out, cfg, address=args.address,
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
    elif args.step == "candidates":
        from core.pipelines.results import open_results
        from core.pipelines.scale_candidates import scale_candidates

        ds = open_results(out, on_progress=progress)
        step = scale_candidates(out, ds, scopes(args.scope), CandidateConfig(network=not args.no_network_cue),
                                address=args.address, num_cpus=args.workers, on_progress=progress)
        for scope, n in step.pairs.items():
            print(f"{Scope(scope).label:>34}: {n:,} candidate pairs")
        print(f"candidates on Ray: {step.seconds:.1f} s; wrote {len(step.files)} parts to {out / 'candidates'}")
    elif args.step in ("embed", "semantic"):
        keep = args.keep_fraction if args.step == "semantic" else None
        sem = scale_semantic(args.source, out, hashed, settings(args).semantic.embedding, keep, address=args.address,
                             num_cpus=args.workers, train_max=args.train_max, on_progress=progress)
        _print_seconds(sem.seconds)
        if sem.kept is None:
            print(f"embeddings {sem.vectors}; wrote {sem.path}")
        else:
            print(f"semantic subset: keeps {sem.kept:,} of {sem.pool:,}; wrote {sem.path}")
    print(f"open the results in the app: Home > Source 'scale', folder {out.resolve()} (or REDEX_DATASET=scale:{out})")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("scale", help="run on Ray: a local one, or a cluster with --address")
    p.add_argument("step", choices=["hash", "duplicates", "embed", "semantic", "candidates"])
    p.add_argument("--scope", default="all", help="candidates: leakage, within, cross, a comma list or all")
    p.add_argument("--no-network-cue", action="store_true",
                   help="candidates: leave out the pairs the trained network's embedding adds")
    p.add_argument("--source", required=True, help="imagefolder:PATH | parquet:PATH | webdataset:PATH")
    p.add_argument("--out", required=True, help="result folder (resumable: finished shards are kept)")
    p.add_argument("--address", default=None, help="auto or ray://HOST:PORT; default: start a local Ray")
    p.add_argument("--workers", type=int, default=None, help="CPUs for a local Ray (default: all)")
    add_radius(p)
    p.add_argument("--keep-fraction", type=float, default=DEFAULT_KEEP_FRACTION,
                   help="semantic: keep this fraction of the training set")
    renamed(p, "--keep", "--keep-fraction", "keep_fraction", float)
    p.add_argument("--train-max", type=int, default=200_000,
                   help="most images decoded on the driver to train the embedding network (a spread of shards)")
    add_hash_method(p)
    add_embedding(p)
    p.set_defaults(fn=cmd_scale)
