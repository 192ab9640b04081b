"""Commands over the embedding: embed, semantic, umap."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from core.cli.common import add_dataset, add_embedding, add_semantic, load, settings, timed
from core.data.datasets import Dataset
from core.data.types import ProgressFn
from core.features.embedding import Embeddings, embed
from core.features.projection import UmapConfig, cached_projection
from core.pipelines.settings import SemanticSettings
from core.selections.selection import Selection
from core.selections.semantic import Dendrograms, semantic_index, semantic_selection


def semantic_selection_at(ds: Dataset, s: SemanticSettings,
                          progress: ProgressFn) -> tuple[Embeddings, Dendrograms, Selection]:
    """(embeddings, dendrograms, selection) at the settings' keep fraction, or their cosine distance when set."""
    emb, dendro = timed("embeddings + dendrograms", lambda: semantic_index(ds, s.embedding, on_progress=progress))
    return emb, dendro, s.cut(dendro, emb.vectors)


def cmd_embed(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = load(args, progress)
    cfg = settings(args).semantic.embedding
    emb = timed("embed", lambda: embed(ds, cfg, download=args.download, on_progress=progress))
    print(f"embeddings: {emb.vectors.shape[0]:,} x {emb.vectors.shape[1]}; " + json.dumps(emb.info, sort_keys=True))
    return 0


def cmd_semantic(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = load(args, progress)
    s = settings(args).semantic
    emb, dendro, sel = semantic_selection_at(ds, s, progress)
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
        again = semantic_selection(dendro, emb.vectors, threshold=other, policy=s.policy)
        print(f"re-cut at cosine distance {other}: keeps {len(again.kept):,} ({100 * again.kept_fraction:.2f}%) "
              f"in {1000 * (time.perf_counter() - t0):.1f} ms")
    return 0


def cmd_umap(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = load(args, progress)
    emb = timed("embed", lambda: embed(ds, settings(args).semantic.embedding, on_progress=progress))
    cfg = UmapConfig(n_neighbors=args.neighbors, min_dist=args.min_dist)
    proj = timed("umap", lambda: cached_projection(emb.vectors, emb.key, cfg, progress))
    print(f"map: {len(proj.xy):,} points, fitted on {proj.fitted_on:,}; x in [{proj.xy[:, 0].min():.2f}, "
          f"{proj.xy[:, 0].max():.2f}], y in [{proj.xy[:, 1].min():.2f}, {proj.xy[:, 1].max():.2f}]")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("embed", help="compute (and cache) embeddings")
    add_dataset(p)
    add_embedding(p)
    p.set_defaults(fn=cmd_embed)
    p = sub.add_parser("semantic", help="semantic redundancy: per-class clusters, kept and removed per class")
    add_dataset(p)
    add_semantic(p)
    p.set_defaults(fn=cmd_semantic)
    p = sub.add_parser("umap", help="2-D UMAP map of the embeddings")
    add_dataset(p)
    add_embedding(p)
    p.add_argument("--neighbors", type=int, default=UmapConfig().n_neighbors)
    p.add_argument("--min-dist", type=float, default=UmapConfig().min_dist)
    p.set_defaults(fn=cmd_umap)
